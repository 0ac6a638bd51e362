//! `make watch`'s routing: the local stack hands one function's invocations
//! to an outside runtime's Invoke API (what `cargo lambda watch` serves),
//! from the gateway and the Invoke API alike, and takes them back.
//!
//! It runs on a stockroom-local of its own (own ports, no event sources, the
//! running stack's emulator and tables), so the shared stack's functions
//! never leave their binaries while other tests use them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use stockroom_tests::{KilledOnDrop, Tenant, free_port};

/// Fields drop in order: the process first, then its directory.
struct Gateway {
    _child: KilledOnDrop,
    api: String,
    invoke: String,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// target/debug (or $CARGO_TARGET_DIR/debug): the test binary is in its deps/.
fn bin_dir() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("no bin dir above {}", exe.display()))?
        .to_owned())
}

async fn private_gateway() -> anyhow::Result<Gateway> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack: Value = serde_json::from_slice(&std::fs::read(repo.join(".local/stack.json"))?)?;
    stack["event_sources"] = json!([]);
    let dir = std::env::temp_dir().join(format!("stockroom-watch-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(dir.join("stack.json"), serde_json::to_vec(&stack)?)?;
    let (api, invoke) = (free_port()?, free_port()?);
    let bin = bin_dir()?;
    let child = Command::new(bin.join("stockroom-local"))
        .arg("--stack")
        .arg(dir.join("stack.json"))
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .args(["--api-addr", &format!("127.0.0.1:{api}")])
        .args(["--invoke-addr", &format!("127.0.0.1:{invoke}")])
        .args(["--env", "STOCKROOM_ENV=local"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let gw = Gateway {
        _child: KilledOnDrop(child),
        api: format!("http://127.0.0.1:{api}"),
        invoke: format!("http://127.0.0.1:{invoke}"),
        _dir: tempdir::Dir(dir),
    };
    for _ in 0..100 {
        let up = stockroom_tests::client()
            .get(format!("{}/_local/health", gw.api))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return Ok(gw);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the private stockroom-local did not come up")
}

/// Each invocation the fake runtime received: its path and payload.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A stand-in for `cargo lambda watch`: records each invocation's path and
/// payload and answers with a proxy response of its own.
async fn fake_runtime() -> anyhow::Result<(String, Seen)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    async fn invoked(
        State(seen): State<Seen>,
        uri: axum::http::Uri,
        _headers: HeaderMap,
        body: Bytes,
    ) -> axum::Json<Value> {
        let payload = serde_json::from_slice(&body).unwrap_or_default();
        seen.lock().unwrap().push((uri.path().to_owned(), payload));
        axum::Json(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/json", "x-request-id": "from-watch"},
            "body": "{\"answered_by\":\"watched runtime\"}"
        }))
    }
    let app = axum::Router::new()
        .fallback(axum::routing::post(invoked))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

#[tokio::test]
async fn a_watched_function_gets_every_invocation_then_hands_them_back() -> anyhow::Result<()> {
    let tenant = Tenant::new().await?;
    let gw = private_gateway().await?;
    let http = stockroom_tests::client();
    let (runtime, seen) = fake_runtime().await?;

    // The env file make watch gives cargo lambda watch: the function's own
    // identity and the template's variables.
    let env = http
        .get(format!("{}/_local/functions/keys-api/env", gw.invoke))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        env.lines().any(|l| l.starts_with("AWS_ACCESS_KEY_ID=ASIA")),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l.starts_with("API_KEYS_TABLE=")),
        "{env}"
    );

    // Only loopback runtimes are accepted.
    let refused = http
        .put(format!("{}/_local/functions/keys-api/watch", gw.invoke))
        .body(r#"{"invoke_url":"http://203.0.113.7:9100"}"#)
        .send()
        .await?;
    assert_eq!(refused.status(), 400);

    let watch = http
        .put(format!("{}/_local/functions/keys-api/watch", gw.invoke))
        .body(json!({"invoke_url": runtime}).to_string())
        .send()
        .await?;
    assert_eq!(watch.status(), 204);

    // Through the gateway (the real authorizer still runs), then the Invoke API.
    let resp = http
        .get(format!("{}/v1/keys", gw.api))
        .bearer_auth(&tenant.api_key)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await?["answered_by"],
        "watched runtime"
    );
    let direct = http
        .post(format!(
            "{}/2015-03-31/functions/keys-api/invocations",
            gw.invoke
        ))
        .body(std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../events/keys-api/list-keys.json"),
        )?)
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(direct["headers"]["x-request-id"], "from-watch");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for (path, payload) in seen.iter() {
            assert_eq!(path, "/2015-03-31/functions/keys-api/invocations");
            assert_eq!(payload["path"], "/v1/keys");
        }
        // The gateway's event carries the authorizer's context for the tenant.
        assert_eq!(
            seen[0].1["requestContext"]["authorizer"]["tenant_id"],
            tenant.tenant_id.as_str()
        );
    }

    // A runtime that went away: a function error that says so.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    http.put(format!("{}/_local/functions/keys-api/watch", gw.invoke))
        .body(json!({"invoke_url": dead}).to_string())
        .send()
        .await?;
    let unavailable = http
        .post(format!(
            "{}/2015-03-31/functions/keys-api/invocations",
            gw.invoke
        ))
        .body("{}")
        .send()
        .await?;
    assert!(unavailable.headers().contains_key("x-amz-function-error"));
    assert_eq!(
        unavailable.json::<Value>().await?["errorType"],
        "Runtime.Unavailable"
    );

    // Handed back: the stack's own binary answers again.
    let unwatch = http
        .delete(format!("{}/_local/functions/keys-api/watch", gw.invoke))
        .send()
        .await?;
    assert_eq!(unwatch.status(), 204);
    let keys = http
        .get(format!("{}/v1/keys", gw.api))
        .bearer_auth(&tenant.api_key)
        .send()
        .await?;
    assert_eq!(keys.status(), 200);
    let keys: Value = keys.json().await?;
    assert!(keys["keys"].is_array(), "{keys}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    Ok(())
}
