//! The span exporter: each batch of the SDK's batch span processor is encoded by
//! [`super::otlp_encode`] and posted to the collector (`POST <otlp_endpoint>`,
//! `Content-Type: application/x-protobuf`, OTLP/HTTP) with reqwest's blocking client, on the
//! processor's own thread. A failed post (no connection, a timeout, a status other than 2xx)
//! fails the batch, which the processor drops; [`super::counting_exporter`] counts it. There is no
//! retry: the next batch follows within a second.

use std::sync::Mutex;
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use reqwest_blocking::blocking::Client;

use super::otlp_encode;

/// Posts batches of spans to an OTLP/HTTP collector.
#[derive(Debug)]
pub(crate) struct OtlpHttpExporter {
    /// `None` once shut down (dropped on the processor's thread, outside any async runtime).
    client: Mutex<Option<Client>>,
    endpoint: reqwest_blocking::Url,
    /// The encoded `Resource` message sent with every batch.
    resource: Vec<u8>,
}

impl OtlpHttpExporter {
    /// An exporter posting to `endpoint` (an `http://` URL), giving up on a post after
    /// `timeout`.
    pub(crate) fn new(endpoint: &str, timeout: Duration) -> Result<OtlpHttpExporter, String> {
        let endpoint = reqwest_blocking::Url::parse(endpoint).map_err(|e| e.to_string())?;
        if endpoint.scheme() != "http" {
            return Err(format!(
                "scheme {} is not supported (only http)",
                endpoint.scheme()
            ));
        }
        // The blocking client runs a runtime of its own, which may not be built (or dropped)
        // on a thread of an async runtime: built on a thread of its own.
        let client = std::thread::Builder::new()
            .name("otlp-client".to_string())
            .spawn(move || Client::builder().timeout(timeout).build())
            .map_err(|e| e.to_string())?
            .join()
            .map_err(|_| "building the HTTP client panicked".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(OtlpHttpExporter {
            client: Mutex::new(Some(client)),
            endpoint,
            resource: Vec::new(),
        })
    }
}

impl SpanExporter for OtlpHttpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let body = otlp_encode::export_request(&self.resource, &batch);
        drop(batch);
        let client = match self.client.lock() {
            Ok(c) => c.clone(),
            Err(_) => None,
        };
        let Some(client) = client else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        let response = client
            .post(self.endpoint.clone())
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let status = response.status();
        // Read to the end, so the connection is kept for the next batch.
        let _ = response.bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "the collector answered {status}"
            )))
        }
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        match self.client.lock().map(|mut c| c.take()) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(OTelSdkError::AlreadyShutdown),
            Err(_) => Err(OTelSdkError::InternalFailure("lock poisoned".to_string())),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = otlp_encode::resource(resource);
    }
}
