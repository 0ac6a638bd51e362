//! `stockroom-local`: the Docker-free local stack. Reads `.local/stack.json`
//! (rendered from template.yaml by `devtools/stack.py`) and serves
//!
//! * the REST API (API Gateway emulation, Lambda proxy + authorizers) on
//!   127.0.0.1:3000,
//! * the Lambda Invoke API (`cargo lambda invoke`) on 127.0.0.1:9000 (and [::1]:9000),
//! * the SQS event source mappings (a poller per mapping, see `esm`) and the
//!   DynamoDB stream ones (a reader per shard, see `stream_esm`),
//!
//! running every function as its pre-built binary under a Lambda Runtime API
//! emulator.

mod emulator;
mod esm;
mod faults;
mod filter;
mod gateway;
mod gwresponse;
mod invoke_api;
mod lambda;
mod policy;
mod routes;
mod sources;
mod spec;
mod stream_esm;
mod usage;

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

const USAGE: &str = "\
stockroom-local: run Stockroom's API locally (API Gateway + Lambda emulation)

USAGE: stockroom-local [OPTIONS]

OPTIONS:
  --stack FILE           normalised stack description [default: .local/stack.json]
  --bin-dir DIR          where the function binaries are [default: target/debug]
  --log-dir DIR          function logs go to DIR/<binary>.log [default: .local/logs]
  --api-addr ADDR        API Gateway address [default: 127.0.0.1:3000]
  --invoke-addr ADDR     Lambda Invoke API address [default: 127.0.0.1:9000]
  --endpoint URL         AWS emulator endpoint given to functions [default: from stack.json]
  --max-instances N      concurrent instances per function [default: 8]
  --fault-proxy-addr ADDR  serve the fault-injecting proxy (src/faults.rs) on ADDR and
                         send the functions' DynamoDB, SQS and SNS calls through it
  --env KEY=VALUE        override/add an environment variable for every function (repeatable),
                         like `sam local --env-vars`
  --echo-logs            also print function output, prefixed with the function name
  -h, --help             this help
";

struct Args {
    stack: PathBuf,
    bin_dir: PathBuf,
    log_dir: PathBuf,
    api_addr: SocketAddr,
    invoke_addr: SocketAddr,
    endpoint: Option<String>,
    fault_proxy_addr: Option<SocketAddr>,
    max_instances: usize,
    echo_logs: bool,
    env: Vec<(String, String)>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        stack: ".local/stack.json".into(),
        bin_dir: "target/debug".into(),
        log_dir: ".local/logs".into(),
        api_addr: "127.0.0.1:3000".parse()?,
        invoke_addr: "127.0.0.1:9000".parse()?,
        endpoint: None,
        fault_proxy_addr: None,
        max_instances: 8,
        echo_logs: false,
        env: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--stack" => a.stack = value()?.into(),
            "--bin-dir" => a.bin_dir = value()?.into(),
            "--log-dir" => a.log_dir = value()?.into(),
            "--api-addr" => a.api_addr = value()?.parse().context("--api-addr")?,
            "--invoke-addr" => a.invoke_addr = value()?.parse().context("--invoke-addr")?,
            "--endpoint" => a.endpoint = Some(value()?),
            "--fault-proxy-addr" => {
                a.fault_proxy_addr = Some(value()?.parse().context("--fault-proxy-addr")?)
            }
            "--max-instances" => a.max_instances = value()?.parse().context("--max-instances")?,
            "--echo-logs" => a.echo_logs = true,
            "--env" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env {kv}: expected KEY=VALUE"))?;
                a.env.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n\n{USAGE}"),
        }
    }
    Ok(a)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STOCKROOM_LOCAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = parse_args()?;
    let mut stack = spec::Stack::load(&args.stack)?;
    if let Some(ep) = &args.endpoint {
        // Queue URLs were rendered against stack.json's endpoint.
        let old = stack.endpoint.trim_end_matches('/').to_string();
        for es in &mut stack.event_sources {
            if let Some(url) = es.queue_url.as_mut()
                && let Some(rest) = url.strip_prefix(&old)
            {
                *url = format!("{}{rest}", ep.trim_end_matches('/'));
            }
        }
        stack.endpoint = ep.clone();
    }
    let aws_calls = Arc::new(emulator::AwsCalls::default());
    // The fault proxy sits between the functions and the emulator for the
    // services whose failures the pipeline must survive (S3 and KMS go direct).
    let fault_proxy = match args.fault_proxy_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the fault proxy on {addr}"))?;
            for f in stack.functions.values_mut() {
                for service in ["DYNAMODB", "SQS", "SNS"] {
                    f.env.insert(
                        format!("AWS_ENDPOINT_URL_{service}"),
                        format!("http://{addr}"),
                    );
                }
            }
            tracing::info!("fault proxy on http://{addr} -> {}", stack.endpoint);
            Some(tokio::spawn(faults::serve(
                listener,
                stack.endpoint.clone(),
                aws_calls.clone(),
            )))
        }
        None => None,
    };
    for f in stack.functions.values_mut() {
        f.env.extend(args.env.iter().cloned());
    }
    let stack = Arc::new(stack);
    let bin_dir = std::path::absolute(&args.bin_dir)?;
    for f in stack.functions.values() {
        if !bin_dir.join(&f.binary).is_file() {
            tracing::warn!(
                "{} not built yet: its routes answer 502 until `cargo build -p {}`",
                bin_dir.join(&f.binary).display(),
                f.binary
            );
        }
    }
    let lambda = Arc::new(lambda::Lambda::new(
        stack.clone(),
        lambda::Options {
            bin_dir,
            log_dir: args.log_dir.clone(),
            echo_logs: args.echo_logs,
            max_instances: args.max_instances,
        },
    )?);
    let children = lambda.children();

    let gw = Arc::new(gateway::Gateway::new(lambda.clone())?);
    let event_sources = Arc::new(sources::EventSources::new(&stack)?);
    let debug_routes = axum::Router::new()
        .route(
            "/_local/event-sources",
            axum::routing::get({
                let es = event_sources.clone();
                move || async move { axum::Json(es.status()) }
            }),
        )
        // The functions' calls are counted only with the fault proxy on.
        .route(
            "/_local/aws-calls",
            axum::routing::get({
                let calls = aws_calls.clone();
                move || async move { axum::Json(calls.snapshot()) }
            }),
        );
    let api_listener = TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("binding the API on {}", args.api_addr))?;
    let invoke_listener = TcpListener::bind(args.invoke_addr)
        .await
        .with_context(|| format!("binding the Invoke API on {}", args.invoke_addr))?;
    // `cargo lambda invoke` defaults to [::1]; serve it there too when we
    // are on the IPv4 loopback.
    let invoke_v6 = if args.invoke_addr.ip().is_loopback() && args.invoke_addr.is_ipv4() {
        TcpListener::bind(("::1", args.invoke_addr.port()))
            .await
            .ok()
    } else {
        None
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let api_app = debug_routes
        .clone()
        .merge(gw.router())
        .into_make_service_with_connect_info::<SocketAddr>();
    let api = tokio::spawn(
        axum::serve(api_listener, api_app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let invoke_app = invoke_api::router(lambda.clone()).merge(debug_routes);
    let inv = tokio::spawn(
        axum::serve(invoke_listener, invoke_app.clone())
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let inv6 = invoke_v6.map(|l| {
        tokio::spawn(
            axum::serve(l, invoke_app)
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .into_future(),
        )
    });

    let pollers = event_sources.start(
        lambda.clone(),
        esm::Sqs::new(&stack.endpoint, &stack.region, aws_calls.clone()),
        stop_rx.clone(),
    );

    let api_spec = stack.api.as_ref().expect("checked by Gateway::new");
    tracing::info!(
        "stack {}: API Gateway (stage {}, {} routes) on http://{}  |  Lambda Invoke API on http://{}  |  functions: {}",
        stack.stack_name,
        api_spec.stage,
        api_spec.routes.len(),
        args.api_addr,
        args.invoke_addr,
        stack
            .functions
            .iter()
            .map(|(id, f)| format!("{id} ({})", f.binary))
            .collect::<Vec<_>>()
            .join(", ")
    );

    shutdown_signal().await;
    tracing::info!("shutting down: stopping pollers and function processes");
    // Pollers first: no new batch is received once the functions are going.
    let _ = stop_tx.send(true);
    // A poller finishes its receive in flight (a short long poll) and hands
    // the messages back before it stops.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(esm::LONG_POLL_SECONDS + 4),
        async {
            for p in pollers {
                let _ = p.await;
            }
        },
    )
    .await;
    children.kill_all();
    // Long-polling runtime clients and keep-alive connections must not hold
    // the exit up.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = api.await;
        let _ = inv.await;
        if let Some(h) = inv6 {
            let _ = h.await;
        }
    })
    .await;
    if let Some(h) = fault_proxy {
        h.abort();
    }
    children.kill_all();
    Ok(())
}
