//! An IP address as text in a stack buffer, as `Display` writes it (dotted quad; RFC 5952 for
//! IPv6): the access log and the spans copy it in one piece. IPv4 addresses, nearly all of them,
//! are written digit by digit without `fmt`.

use std::io::Write;
use std::net::IpAddr;

/// The longest text of an address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const MAX: usize = 45;

/// An address's text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpText {
    buf: [u8; MAX],
    len: u8,
}

impl IpText {
    /// The text of `ip`.
    #[inline]
    pub(crate) fn of(ip: IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                let mut n = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.buf[n] = b'.';
                        n += 1;
                    }
                    if octet >= 100 {
                        t.buf[n] = b'0' + octet / 100;
                        n += 1;
                    }
                    if octet >= 10 {
                        t.buf[n] = b'0' + octet / 10 % 10;
                        n += 1;
                    }
                    t.buf[n] = b'0' + octet % 10;
                    n += 1;
                }
                t.len = n as u8;
            }
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut t.buf[..]);
                // 45 bytes hold any IPv6 address's text.
                let _ = write!(cursor, "{v6}");
                t.len = cursor.position() as u8;
            }
        }
        t
    }

    /// The text's bytes.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text equals `Display`'s for random and edge addresses of both families.
    #[test]
    fn equals_display() {
        let mut ips: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "2001:db8::8a2e:370:7334",
        ]
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect();
        for _ in 0..2000 {
            ips.push(IpAddr::from(rand::random::<[u8; 4]>()));
            ips.push(IpAddr::from(rand::random::<[u8; 16]>()));
        }
        for ip in ips {
            assert_eq!(IpText::of(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
