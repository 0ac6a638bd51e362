//! `stockroom items get`.

use crate::api::{Api, Retry, read_json, refused};
use crate::error::{CliError, Exit};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `/v1/items/{sku}`, the sku percent-encoded as one path segment.
fn item_path(sku: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/v1/items").expect("a valid URL");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(sku);
    }
    url.path().to_owned()
}

/// Prints the item as pretty JSON; a missing sku is exit 6.
pub async fn get(api: &Api, sku: &str) -> anyhow::Result<Exit> {
    let path = item_path(sku);
    let what = format!("GET {path}");
    let resp = api
        .send(Retry::Safe, || api.request(Method::GET, &path))
        .await?;
    if resp.status() == StatusCode::NOT_FOUND {
        let r = refused(&what, resp).await;
        return Err(CliError::new(
            Exit::NotFound,
            format!("no item with sku {sku:?} (404 {})", r.problem.code),
        )
        .into());
    }
    if !resp.status().is_success() {
        return Err(refused(&what, resp).await.into_error().into());
    }
    let item: Value = read_json(&what, resp).await?;
    println!("{}", serde_json::to_string_pretty(&item)?);
    Ok(Exit::Completed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn skus_are_one_path_segment() {
        assert_eq!(super::item_path("MUG-1.a_b"), "/v1/items/MUG-1.a_b");
        assert_eq!(super::item_path("a/b c"), "/v1/items/a%2Fb%20c");
    }
}
