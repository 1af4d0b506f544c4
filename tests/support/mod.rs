//! Shared black-box test harness for the Switchyard acceptance suite.
//!
//! Every test file starts with `mod support;` and uses:
//!
//! * [`Origin`]: an in-process HTTP/1.1 origin (hyper 1) on its own tokio runtime. It answers with
//!   header `x-origin: <name>` and body `<name>`, records every request and counts accepted TCP
//!   connections. Status, delay and failure modes ([`OriginMode`]) can be changed at run time;
//!   [`Origin::stop`] closes the listener *and* every open connection, [`Origin::restart`] binds the
//!   same address again.
//! * [`Gateway`]: the real `switchyard` binary started with `run -c <file>` on a config written into
//!   a temporary directory. [`Gateway::start`] returns once every `listen` address of the config
//!   accepts TCP connections; dropping the gateway kills the process.
//! * [`check`] / [`run_cli`]: run `switchyard check -c <file>` or any other command line.
//! * [`free_port`], [`client`], [`send`], [`get`], [`get_with_host`], [`raw_http`]: client helpers.
//! * [`parse_metrics`], [`Sample`], [`metric_sum`]: a small Prometheus text-format parser.
//! * [`UpgradeOrigin`]: answers an `Upgrade: websocket` request with `101`, then echoes bytes.
//! * [`RawOrigin`]: an HTTP/1 origin that records every byte it receives and answers with
//!   scripted bytes (malformed responses included); [`upstream_section_for`] names it in a config.
//! * [`Collector`]: a real OTLP/HTTP trace receiver (plain or TLS) decoding protobuf spans.
//!
//! Nothing here talks to anything but 127.0.0.0/8 and ::1, and every wait is bounded.

#![allow(dead_code)]

mod binary;
mod client;
mod config;
mod etcd;
mod gateway;
mod metrics;
mod origin;
mod otlp;
mod raw_origin;
mod tls;
mod upgrade_origin;

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use {
    binary::*, client::*, config::*, etcd::*, gateway::*, metrics::*, origin::*, otlp::*,
    raw_origin::*, tls::*, upgrade_origin::*,
};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream as TokioTcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
