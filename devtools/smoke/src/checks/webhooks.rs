//! Webhooks (webhooks-api, webhook-dispatcher): deliveries to the receiver
//! given in STOCKROOM_WEBHOOK_URL, verified through the delivery log.

use super::items::secs;
use crate::api::send;
use crate::suite::{Suite, needs};
use anyhow::{Context, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);

/// `[200]`, `[500, 200]`: the status codes of a delivery's attempts.
fn attempts(delivery: &Value) -> Vec<String> {
    delivery["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| match (a["status_code"].as_u64(), a["error"].as_str()) {
            (Some(code), _) => code.to_string(),
            (None, Some(error)) => format!("error: {error}"),
            (None, None) => a["outcome"].as_str().unwrap_or("?").to_owned(),
        })
        .collect()
}

/// A delivered delivery's last attempt answered 2xx; a failed one is an error.
fn settled(delivery: &Value) -> anyhow::Result<Option<String>> {
    let tried = attempts(delivery);
    match delivery["status"].as_str().unwrap_or_default() {
        "delivered" => {
            let last = delivery["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .context("delivered without an attempt")?;
            let code = last["status_code"].as_u64().unwrap_or(0);
            ensure!(
                (200..300).contains(&code) && last["outcome"] == "delivered",
                "delivered, but the last attempt was {last}"
            );
            Ok(Some(format!("attempts {tried:?}")))
        }
        "failed" => bail!(
            "delivery {} failed; attempts {tried:?}",
            delivery["id"].as_str().unwrap_or("?")
        ),
        _ => Ok(None),
    }
}

impl Suite {
    pub async fn webhook_register(&mut self) -> anyhow::Result<String> {
        let url = self.cfg.webhook_url.clone().unwrap_or_default();
        let a = self
            .api
            .post(
                "/v1/webhooks",
                &json!({"url": url, "events": ["item.low_stock"], "description": format!("{} smoke", self.run)}),
            )
            .await?;
        a.expect(201)?;
        let id = a.str("id")?;
        self.created.webhooks.push(id.clone());
        ensure!(
            a.str("secret")?.starts_with("whsec_"),
            "POST /v1/webhooks: the secret is not whsec_..."
        );
        ensure!(
            a.body["status"] == "enabled",
            "POST /v1/webhooks: {}",
            a.short()
        );
        self.webhook = Some(id.clone());
        Ok(format!("201 {id}, enabled, whsec_ secret"))
    }

    pub async fn webhook_ping(&mut self) -> anyhow::Result<String> {
        let hook = self
            .webhook
            .clone()
            .ok_or_else(|| needs("webhooks: register"))?;
        let started = Instant::now();
        let a = send(
            self.api
                .request(Method::POST, &format!("/v1/webhooks/{hook}/test")),
        )
        .await?;
        a.expect(202)?;
        let delivery = a.str("id")?;
        ensure!(
            a.body["event_type"] == "webhook.ping",
            "test: {}",
            a.short()
        );
        loop {
            let d = self
                .api
                .get(&format!("/v1/webhooks/{hook}/deliveries/{delivery}"))
                .await?;
            d.expect(200)?;
            if let Some(done) = settled(&d.body)? {
                return Ok(format!(
                    "webhook.ping delivered in {}, {done}",
                    secs(started)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// An adjustment taking an item to its threshold publishes
    /// `item.low_stock`; the dispatcher delivers it to the webhook.
    pub async fn webhook_low_stock(&mut self) -> anyhow::Result<String> {
        let hook = self
            .webhook
            .clone()
            .ok_or_else(|| needs("webhooks: register"))?;
        let started = Instant::now();
        let sku = self.new_sku("LOW");
        self.api
            .post(
                "/v1/items",
                &json!({"sku": sku, "name": "Smoke low-stock item", "quantity": 10, "low_stock_threshold": 5}),
            )
            .await?
            .expect(201)?;
        let a = self
            .api
            .post(
                &format!("/v1/items/{sku}/adjustments"),
                &json!({"delta": -6, "reason": "sale"}),
            )
            .await?;
        a.expect(200)?;
        ensure!(a.body["quantity"] == 4, "adjustment: {}", a.short());
        loop {
            let page = self
                .api
                .get(&format!("/v1/webhooks/{hook}/deliveries?limit=100"))
                .await?;
            page.expect(200)?;
            let low: Vec<&Value> = page.body["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["event_type"] == "item.low_stock")
                .collect();
            ensure!(
                low.len() <= 1,
                "{} item.low_stock deliveries for one crossing",
                low.len()
            );
            if let Some(d) = low.first()
                && let Some(done) = settled(d)?
            {
                return Ok(format!(
                    "item.low_stock delivered in {}, {done}",
                    secs(started)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn webhook_delete(&mut self) -> anyhow::Result<String> {
        let hook = self
            .webhook
            .clone()
            .ok_or_else(|| needs("webhooks: register"))?;
        let path = format!("/v1/webhooks/{hook}");
        self.api.delete(&path).await?.expect(204)?;
        self.created.webhooks.retain(|w| *w != hook);
        self.api
            .get(&path)
            .await?
            .expect_problem(404, "webhook_not_found")?;
        Ok("204; then GET 404 webhook_not_found".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_delivered_delivery_with_a_2xx_last_attempt_passes() {
        let ok = json!({"status": "delivered", "attempts": [
            {"status_code": 500, "outcome": "failed"}, {"status_code": 204, "outcome": "delivered"}]});
        assert_eq!(settled(&ok).unwrap().unwrap(), r#"attempts ["500", "204"]"#);
        let pending =
            json!({"status": "pending", "attempts": [{"status_code": 503, "outcome": "failed"}]});
        assert_eq!(settled(&pending).unwrap(), None);
        let failed = json!({"id": "dlv_1", "status": "failed", "attempts": [{"error": "connection refused", "outcome": "failed"}]});
        let err = settled(&failed).unwrap_err().to_string();
        assert!(err.contains("connection refused"), "{err}");
        let odd =
            json!({"status": "delivered", "attempts": [{"status_code": 302, "outcome": "failed"}]});
        assert!(settled(&odd).is_err());
        let empty = json!({"status": "delivered", "attempts": []});
        assert!(settled(&empty).is_err());
    }
}
