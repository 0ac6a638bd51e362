//! Health, authentication, items and adjustments (items-api, authorizer).

use crate::api::send;
use crate::suite::{Item, Suite, needs};
use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Instant;

/// Items listed per page when looking for the run's items.
const PAGE: usize = 100;

impl Suite {
    pub async fn health(&mut self) -> anyhow::Result<String> {
        let a = send(self.api.unauthenticated(Method::GET, "/v1/health")).await?;
        a.expect(200)?;
        ensure!(a.body["status"] == "ok", "GET /v1/health: {}", a.short());
        ensure!(
            a.header("x-request-id").is_some(),
            "GET /v1/health: no x-request-id header"
        );
        Ok(format!("200 {}", a.short()))
    }

    pub async fn no_key(&mut self) -> anyhow::Result<String> {
        let a = send(self.api.unauthenticated(Method::GET, "/v1/items")).await?;
        a.expect_problem(401, "unauthorized")?;
        Ok("401 unauthorized".into())
    }

    pub async fn unknown_key(&mut self) -> anyhow::Result<String> {
        // Well-formed, never issued: the authorizer looks it up and refuses it.
        let forged = format!("sk_live_{}", "0".repeat(40));
        let a = self.api.with_key(&forged).get("/v1/items").await?;
        a.expect_problem(401, "unauthorized")?;
        Ok("401 unauthorized".into())
    }

    /// API Gateway's own answers as the template shapes them: an unknown
    /// path is a problem 404, a method the path lacks a 405 naming the
    /// path's methods (each path's ANY method), OPTIONS the preflight.
    pub async fn routing(&mut self) -> anyhow::Result<String> {
        let a = send(self.api.unauthenticated(Method::GET, "/v1/nothing-here")).await?;
        a.expect_problem(404, "route_not_found")?;
        let a = send(self.api.unauthenticated(Method::PATCH, "/v1/items")).await?;
        a.expect_problem(405, "method_not_allowed")?;
        ensure!(
            a.header("allow") == Some("GET,HEAD,POST,OPTIONS"),
            "PATCH /v1/items: Allow {:?}",
            a.header("allow")
        );
        let a = send(self.api.unauthenticated(Method::OPTIONS, "/v1/items")).await?;
        a.expect(204)?;
        ensure!(
            a.header("x-request-id").is_some(),
            "OPTIONS /v1/items: no x-request-id"
        );
        Ok("404 route_not_found, 405 with Allow, OPTIONS 204".into())
    }

    /// The key the suite runs with reads (a 401 here stops the run).
    pub async fn key_accepted(&mut self) -> anyhow::Result<String> {
        let a = self.api.get("/v1/items?limit=1").await?;
        a.expect(200)?;
        Ok("GET /v1/items 200".into())
    }

    pub async fn item_create(&mut self) -> anyhow::Result<String> {
        let sku = self.new_sku("ITEM");
        let a = self
            .api
            .post(
                "/v1/items",
                &json!({"sku": sku, "name": "Smoke test item", "quantity": 12, "low_stock_threshold": 2}),
            )
            .await?;
        a.expect(201)?;
        let etag = a
            .header("etag")
            .context("POST /v1/items: no ETag")?
            .to_owned();
        let location = a.header("location").unwrap_or_default();
        ensure!(
            location.ends_with(&format!("/v1/items/{sku}")),
            "POST /v1/items: Location {location:?}"
        );
        ensure!(
            a.body["sku"] == sku.as_str() && a.body["quantity"] == 12,
            "POST /v1/items: {}",
            a.short()
        );
        self.item = Some(Item { sku, etag });
        Ok("201, ETag, Location".into())
    }

    pub async fn item_read(&mut self) -> anyhow::Result<String> {
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        let path = format!("/v1/items/{}", item.sku);
        let a = self.api.get(&path).await?;
        a.expect(200)?;
        ensure!(
            a.body["name"] == "Smoke test item" && a.body["quantity"] == 12,
            "GET {path}: {}",
            a.short()
        );
        let etag = a.header("etag").context("GET: no ETag")?.to_owned();
        ensure!(
            etag == item.etag,
            "GET: ETag {etag} is not the create's {}",
            item.etag
        );
        let fresh = send(
            self.api
                .request(Method::GET, &path)
                .header("if-none-match", &etag),
        )
        .await?;
        fresh.expect(304)?;
        ensure!(fresh.text.is_empty(), "304 with a body: {}", fresh.short());
        let fields = self.api.get(&format!("{path}?fields=sku,quantity")).await?;
        fields.expect(200)?;
        ensure!(
            fields.body.get("name").is_none() && fields.body["quantity"] == 12,
            "?fields=sku,quantity: {}",
            fields.short()
        );
        Ok("200 + ETag; If-None-Match 304; ?fields".into())
    }

    pub async fn item_update(&mut self) -> anyhow::Result<String> {
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        let path = format!("/v1/items/{}", item.sku);
        let body = json!({"name": "Smoke test item, renamed", "low_stock_threshold": 2});
        let a = send(
            self.api
                .request(Method::PUT, &path)
                .header("if-match", &item.etag)
                .json(&body),
        )
        .await?;
        a.expect(200)?;
        ensure!(
            a.body["name"] == "Smoke test item, renamed" && a.body["quantity"] == 12,
            "PUT {path}: {}",
            a.short()
        );
        let etag = a.header("etag").context("PUT: no ETag")?.to_owned();
        ensure!(etag != item.etag, "PUT: the ETag did not change");
        let same = send(self.api.request(Method::PUT, &path).json(&body)).await?;
        same.expect(204)?;
        let stale = send(
            self.api
                .request(Method::PUT, &path)
                .header("if-match", &item.etag)
                .json(&json!({"name": "stale"})),
        )
        .await?;
        stale.expect(412)?;
        self.item = Some(Item { etag, ..item });
        Ok("200 renamed; same again 204; stale If-Match 412".into())
    }

    pub async fn item_list(&mut self) -> anyhow::Result<String> {
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        // A second item, so that a page of one has a next page.
        let second = self.new_sku("LIST");
        self.api
            .post(
                "/v1/items",
                &json!({"sku": second, "name": "Smoke list item"}),
            )
            .await?
            .expect(201)?;
        let first = self.api.get("/v1/items?limit=1").await?;
        first.expect(200)?;
        let page = first.body["items"].as_array().map(Vec::len);
        ensure!(page == Some(1), "GET /v1/items?limit=1: {page:?} items");
        ensure!(
            first.body["next_cursor"].is_string(),
            "GET /v1/items?limit=1: no next_cursor with at least two items"
        );
        let (mut found, mut pages, mut cursor) = (BTreeSet::new(), 0, None::<String>);
        loop {
            let path = match &cursor {
                None => format!("/v1/items?limit={PAGE}"),
                Some(c) => format!("/v1/items?limit={PAGE}&cursor={}", urlencode(c)),
            };
            let a = self.api.get(&path).await?;
            a.expect(200)?;
            pages += 1;
            for it in a.body["items"].as_array().into_iter().flatten() {
                let sku = it["sku"].as_str().unwrap_or_default();
                if sku == item.sku || sku == second {
                    found.insert(sku.to_owned());
                }
            }
            if found.len() == 2 {
                break;
            }
            cursor = a.body["next_cursor"].as_str().map(str::to_owned);
            ensure!(
                cursor.is_some(),
                "listed every page ({pages}) without finding {found:?} among both skus"
            );
        }
        Ok(format!(
            "limit=1 + next_cursor; both items found in {pages} page(s)"
        ))
    }

    pub async fn item_unknown(&mut self) -> anyhow::Result<String> {
        let a = self
            .api
            .get(&format!("/v1/items/{}", self.sku("NEVER")))
            .await?;
        a.expect_problem(404, "item_not_found")?;
        Ok("404 item_not_found".into())
    }

    pub async fn adjust_replay(&mut self) -> anyhow::Result<String> {
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        let path = format!("/v1/items/{}/adjustments", item.sku);
        let key = format!("{}-adjust", self.run);
        let body =
            json!({"delta": -3, "reason": "sale", "reference": format!("{}-order", self.run)});
        let post = || {
            send(
                self.api
                    .request(Method::POST, &path)
                    .header("idempotency-key", &key)
                    .json(&body),
            )
        };
        let first = post().await?;
        first.expect(200)?;
        ensure!(
            first.body["quantity"] == 9,
            "first adjustment: {}",
            first.short()
        );
        let again = post().await?;
        again.expect(200)?;
        ensure!(
            again.body == first.body,
            "the replay answered {} instead of {}",
            again.short(),
            first.short()
        );
        let now = self.api.get(&format!("/v1/items/{}", item.sku)).await?;
        now.expect(200)?;
        ensure!(
            now.body["quantity"] == 9,
            "applied twice? quantity is {} after two sends of -3 to 12",
            now.body["quantity"]
        );
        let movements = self
            .api
            .get(&format!("/v1/items/{}/movements", item.sku))
            .await?;
        movements.expect(200)?;
        let n = movements.body["movements"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["delta"] == -3).count());
        ensure!(n == Some(1), "ledger: {n:?} movements of -3, want 1");
        Ok("200 quantity 9; replay: same answer, one movement".into())
    }

    pub async fn adjust_reuse(&mut self) -> anyhow::Result<String> {
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        let a = send(
            self.api
                .request(Method::POST, &format!("/v1/items/{}/adjustments", item.sku))
                .header("idempotency-key", format!("{}-adjust", self.run))
                .json(&json!({"delta": -1, "reason": "sale"})),
        )
        .await?;
        a.expect_problem(422, "idempotency_key_reused")?;
        Ok("422 idempotency_key_reused".into())
    }

    pub async fn item_delete(&mut self) -> anyhow::Result<String> {
        let item = self.item.clone().ok_or_else(|| needs("items: create"))?;
        let path = format!("/v1/items/{}", item.sku);
        self.api.delete(&path).await?.expect(204)?;
        self.api
            .get(&path)
            .await?
            .expect_problem(404, "item_not_found")?;
        self.api
            .delete(&path)
            .await?
            .expect_problem(404, "item_not_found")?;
        Ok("204; then GET and DELETE 404 item_not_found".into())
    }
}

/// Measures how long `since` was, for details.
pub fn secs(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

/// A cursor as a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
