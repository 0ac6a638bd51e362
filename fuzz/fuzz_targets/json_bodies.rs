//! Request bodies: bytes -> JSON (size and depth limits) -> every route's
//! body validator, and each error through the one problem mapping. No input
//! may panic; a valid body must survive its own limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockroom_app::batches::rejection;
use stockroom_app::error::ApiError;
use stockroom_app::keys::NewKey;
use stockroom_domain::batch::parse_batch;
use stockroom_domain::upload::parse_upload_request;
use stockroom_domain::webhook::NewWebhook;
use stockroom_domain::{Adjustment, ItemPatch, NewItem};
use stockroom_http::problem::ProblemMapping;
use stockroom_http::{MAX_BODY_BYTES, parse_json_body};

fuzz_target!(|data: &[u8]| {
    let body = match parse_json_body(data, MAX_BODY_BYTES) {
        Ok(v) => v,
        Err(e) => {
            let p = e.to_problem("fuzz".into());
            assert!(p.status == 400 || p.status == 413, "{}", p.status);
            return;
        }
    };
    let problem = |e: ApiError| {
        let p = e.to_problem("fuzz".into());
        assert!((400..500).contains(&p.status), "{}", p.status);
    };
    if let Err(e) = NewItem::from_json(&body) {
        assert!(!e.is_empty(), "a refusal names at least one field");
        problem(ApiError::Validation(e));
    }
    if let Ok(sku) = stockroom_domain::Sku::parse("SKU-1") {
        let _ = ItemPatch::from_put_json(&body, &sku);
    }
    let _ = Adjustment::from_json(&body);
    let _ = NewWebhook::from_json(&body);
    let _ = NewKey::from_json(&body, time::OffsetDateTime::UNIX_EPOCH);
    match parse_batch(&body) {
        Ok(req) => assert_eq!(req.total, req.valid.len() + req.invalid.len()),
        Err(e) => problem(rejection(e, false)),
    }
    if let Err(e) = parse_upload_request(&body) {
        problem(rejection(e, false));
    }
});
