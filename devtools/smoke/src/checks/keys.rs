//! Keys and scopes (keys-api, authorizer): a key with items:read only reads,
//! is refused writes with 403, and stops working once revoked.

use super::items::secs;
use crate::api::send;
use crate::suite::{ScopedKey, Skipped, Suite, needs};
use anyhow::ensure;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

impl Suite {
    pub async fn key_create(&mut self) -> anyhow::Result<String> {
        let a = self
            .api
            .post(
                "/v1/keys",
                &json!({"name": format!("{} read-only", self.run), "scopes": ["items:read"]}),
            )
            .await?;
        a.expect(201)?;
        let id = a.str("key_id")?;
        self.created.keys.push(id.clone());
        let key = a.str("api_key")?;
        ensure!(
            a.body["scopes"] == json!(["items:read"]),
            "POST /v1/keys: scopes {}",
            a.body["scopes"]
        );
        let listed = self.api.get(&format!("/v1/keys/{id}")).await?;
        listed.expect(200)?;
        ensure!(
            listed.body.get("api_key").is_none() && !listed.text.contains(&key),
            "GET /v1/keys/{id} shows the key"
        );
        self.scoped = Some(ScopedKey { id, key });
        Ok("201 with scopes [items:read]; GET shows no secret".into())
    }

    pub async fn key_reads(&mut self) -> anyhow::Result<String> {
        let scoped = self.scoped.clone().ok_or_else(|| needs("keys: create"))?;
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        let a = self
            .api
            .with_key(&scoped.key)
            .get(&format!("/v1/items/{}", item.sku))
            .await?;
        a.expect(200)?;
        ensure!(a.body["sku"] == item.sku.as_str(), "GET: {}", a.short());
        Ok("GET /v1/items/{sku} 200".into())
    }

    pub async fn key_write_refused(&mut self) -> anyhow::Result<String> {
        let scoped = self.scoped.clone().ok_or_else(|| needs("keys: create"))?;
        let sku = self.new_sku("NOT-CREATED");
        let as_reader = self.api.with_key(&scoped.key);
        as_reader
            .post("/v1/items", &json!({"sku": sku, "name": "must not exist"}))
            .await?
            .expect_problem(403, "insufficient_scope")?;
        as_reader
            .post(
                "/v1/keys",
                &json!({"name": "escalation", "scopes": ["items:read"]}),
            )
            .await?
            .expect_problem(403, "insufficient_scope")?;
        self.api
            .get(&format!("/v1/items/{sku}"))
            .await?
            .expect_problem(404, "item_not_found")?;
        Ok("POST /v1/items and /v1/keys 403 insufficient_scope; nothing written".into())
    }

    pub async fn key_revoke(&mut self) -> anyhow::Result<String> {
        let scoped = self.scoped.clone().ok_or_else(|| needs("keys: create"))?;
        let path = format!("/v1/keys/{}", scoped.id);
        self.api.delete(&path).await?.expect(204)?;
        self.created.keys.retain(|k| *k != scoped.id);
        let a = self.api.get(&path).await?;
        a.expect(200)?;
        ensure!(
            a.body["revoked_at"].is_string(),
            "GET {path} after DELETE: no revoked_at in {}",
            a.short()
        );
        Ok("204; GET shows revoked_at".into())
    }

    /// API Gateway caches the authorizer's decision per key for
    /// `AuthorizerCacheTtlSeconds` (300 s by default): a revoked key keeps
    /// working until then. Checked only when given that long to try.
    pub async fn key_revoked_refused(&mut self) -> anyhow::Result<String> {
        let wait = self.cfg.revocation_wait;
        if wait.is_zero() {
            return Err(Skipped(
                "not checked: a revoked key works until the authorizer cache expires (AuthorizerCacheTtlSeconds, 300 s by default); set STOCKROOM_SMOKE_REVOCATION_WAIT above it".into(),
            )
            .into());
        }
        let scoped = self.scoped.clone().ok_or_else(|| needs("keys: revoke"))?;
        let started = Instant::now();
        let as_revoked = self.api.with_key(&scoped.key);
        loop {
            let a = send(as_revoked.request(Method::GET, "/v1/items?limit=1")).await?;
            match a.status {
                401 => {
                    a.expect_problem(401, "unauthorized")?;
                    return Ok(format!("401 unauthorized after {}", secs(started)));
                }
                200 => {}
                _ => anyhow::bail!("revoked key: {}", a.summary()),
            }
            ensure!(
                started.elapsed() < wait,
                "the revoked key still reads after {} (STOCKROOM_SMOKE_REVOCATION_WAIT={})",
                secs(started),
                wait.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
