//! An HTTPS front for the emulator, for `cold-start ... tls`: AWS endpoints
//! speak TLS and keep connections alive, the emulator speaks plain HTTP and
//! closes each one, so against it a function's first call pays no handshake
//! and its warm calls reconnect. Through this front the first call pays a
//! TCP connect and a TLS handshake (ECDHE, certificate verification) and the
//! warm ones reuse the connection, as on AWS — the cost the issue's "warm
//! the connection pool during init" would move.
//!
//! A self-signed certificate for 127.0.0.1, made at start; the functions
//! trust it through `STOCKROOM_SDK_TLS_ROOTS=system` + `SSL_CERT_FILE`.
//! Requests and responses are forwarded whole to the emulator.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

pub struct TlsFront {
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// The certificate, PEM, for `SSL_CERT_FILE`.
    pub cert_file: PathBuf,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

struct Upstream {
    base: String,
    http: reqwest::Client,
}

/// Forwards one request to the emulator and its answer back.
async fn forward(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    headers.remove(axum::http::header::HOST);
    let answer = up
        .http
        .request(parts.method, format!("{}{path}", up.base))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        // The front keeps its side of the connection alive itself.
        if name != axum::http::header::CONNECTION && name != axum::http::header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    let body: Bytes = answer.bytes().await.unwrap_or_default();
    (status, headers, Body::from(body)).into_response()
}

/// Starts the front for the emulator at `upstream` (`http://127.0.0.1:<port>`),
/// its certificate written under `dir`.
pub async fn start(upstream: &str, dir: &std::path::Path) -> Result<TlsFront> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .context("making the front's certificate")?;
    let cert_file = dir.join("bench-tls-front.pem");
    std::fs::write(&cert_file, cert.cert.pem())
        .with_context(|| format!("writing {}", cert_file.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let accept_loop = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // Without it Nagle holds the response behind TLS 1.3's session
            // tickets until the client's delayed ACK: 40 ms per connection.
            let _ = tcp.set_nodelay(true);
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    Ok(TlsFront {
        url,
        cert_file,
        accept_loop,
    })
}
