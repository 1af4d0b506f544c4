//! `StatusRange`: a status code or an inclusive range of them (`200`, `"200-399"`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An inclusive range of HTTP status codes (`200` or `"200-399"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status accepted.
    pub lo: u16,
    /// Highest status accepted.
    pub hi: u16,
}

impl StatusRange {
    /// True if `status` lies in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.collect_str(&format_args!("{}-{}", self.lo, self.hi))
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        let check = |v: i64| -> Result<u16, D::Error> {
            if (100..=599).contains(&v) {
                Ok(v as u16)
            } else {
                Err(serde::de::Error::custom(format!(
                    "status {v} is outside 100..=599"
                )))
            }
        };
        match Raw::deserialize(d)? {
            Raw::Int(v) => {
                let c = check(v)?;
                Ok(StatusRange { lo: c, hi: c })
            }
            Raw::Str(s) => {
                let parse = |p: &str| -> Result<u16, D::Error> {
                    let v: i64 = p.trim().parse().map_err(|_| {
                        serde::de::Error::custom(format!(
                            "`{s}` is not a status or a range like \"200-399\""
                        ))
                    })?;
                    check(v)
                };
                let (lo, hi) = match s.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => {
                        let v = parse(&s)?;
                        (v, v)
                    }
                };
                if lo > hi {
                    return Err(serde::de::Error::custom(format!(
                        "range `{s}` is empty (low end above high end)"
                    )));
                }
                Ok(StatusRange { lo, hi })
            }
        }
    }
}
