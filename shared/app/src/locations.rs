//! Locations: create, read, list and delete a tenant's locations. The
//! default location is never stored: it is listed first and cannot be
//! created or deleted.

use crate::clock;
use crate::domain::location::{Location, LocationId, NewLocation};
use crate::domain::{Fields, TenantId};
use crate::error::ApiError;
use crate::ports::{LocationStore, Page, PageKey, StoreError};
use std::sync::Arc;

/// The page key of "the stored locations from their start": the first page
/// held only the default location.
const AFTER_DEFAULT: &str = "after_default";

#[derive(Clone)]
pub struct LocationsService {
    store: Arc<dyn LocationStore>,
}

impl LocationsService {
    pub fn new(store: Arc<dyn LocationStore>) -> Self {
        Self { store }
    }

    pub async fn create(&self, tenant: &TenantId, new: NewLocation) -> Result<Location, ApiError> {
        let location = Location::new(new, &clock::now_rfc3339());
        match self.store.create_location(tenant, &location).await {
            Ok(()) => Ok(location),
            Err(StoreError::AlreadyExists) => Err(ApiError::LocationExists),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &LocationId,
        fields: Option<&Fields<Location>>,
    ) -> Result<Location, ApiError> {
        if id.is_default() {
            return Ok(Location::default_location());
        }
        self.store
            .get_location(tenant, id, fields)
            .await?
            .ok_or(ApiError::LocationNotFound)
    }

    /// The default location first, then the stored ones in id order.
    pub async fn list(
        &self,
        tenant: &TenantId,
        limit: u32,
        start: Option<PageKey>,
        fields: Option<&Fields<Location>>,
    ) -> Result<Page<Location>, ApiError> {
        let from_start = start
            .as_ref()
            .is_some_and(|k| k.contains_key(AFTER_DEFAULT));
        match start {
            Some(key) if !from_start => Ok(self
                .store
                .list_locations(tenant, limit, Some(key), fields)
                .await?),
            Some(_) => Ok(self
                .store
                .list_locations(tenant, limit, None, fields)
                .await?),
            None if limit <= 1 => Ok(Page {
                items: vec![Location::default_location()],
                next: Some(PageKey::from([(AFTER_DEFAULT.to_owned(), "1".to_owned())])),
            }),
            None => {
                let stored = self
                    .store
                    .list_locations(tenant, limit - 1, None, fields)
                    .await?;
                let mut items = vec![Location::default_location()];
                items.extend(stored.items);
                Ok(Page {
                    items,
                    next: stored.next,
                })
            }
        }
    }

    pub async fn delete(&self, tenant: &TenantId, id: &LocationId) -> Result<(), ApiError> {
        if id.is_default() {
            return Err(ApiError::DefaultLocationFixed);
        }
        match self.store.delete_location(tenant, id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::LocationNotFound),
            Err(StoreError::LocationHoldsStock) => Err(ApiError::LocationHoldsStock),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::location::LocationKind;
    use crate::memory::MemoryItemStore;
    use serde_json::json;

    fn service() -> LocationsService {
        LocationsService::new(Arc::new(MemoryItemStore::default()))
    }

    fn new(id: &str) -> NewLocation {
        NewLocation::from_json(&json!({"id": id, "name": id, "kind": "warehouse"})).unwrap()
    }

    #[tokio::test]
    async fn the_default_location_always_exists_and_cannot_be_deleted_or_taken() {
        let s = service();
        let tenant = TenantId::parse("acme").unwrap();
        let default = LocationId::default_location();
        let shown = s.get(&tenant, &default, None).await.unwrap();
        assert!(shown.default);
        assert!(matches!(
            s.delete(&tenant, &default).await,
            Err(ApiError::DefaultLocationFixed)
        ));
        let page = s.list(&tenant, 20, None, None).await.unwrap();
        assert_eq!(page.items, vec![Location::default_location()]);
        assert_eq!(page.next, None);
    }

    #[tokio::test]
    async fn locations_are_created_once_listed_after_the_default_and_deleted() {
        let s = service();
        let tenant = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        for id in ["b-store", "a-depot", "c-shop"] {
            s.create(&tenant, new(id)).await.unwrap();
        }
        assert!(matches!(
            s.create(&tenant, new("a-depot")).await,
            Err(ApiError::LocationExists)
        ));
        let made = s
            .get(&tenant, &LocationId::parse("a-depot").unwrap(), None)
            .await
            .unwrap();
        assert_eq!((made.kind, made.default), (LocationKind::Warehouse, false));
        assert!(made.created_at.is_some());

        // Page by page with limit 1: the default first, then in id order.
        let mut seen = Vec::new();
        let mut start = None;
        loop {
            let page = s.list(&tenant, 1, start, None).await.unwrap();
            seen.extend(page.items.into_iter().map(|l| l.id));
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["default", "a-depot", "b-store", "c-shop"]);
        let two = s.list(&tenant, 2, None, None).await.unwrap();
        assert_eq!(two.items.len(), 2);
        let rest = s.list(&tenant, 5, two.next, None).await.unwrap();
        let rest: Vec<String> = rest.items.into_iter().map(|l| l.id).collect();
        assert_eq!(rest, ["b-store", "c-shop"]);

        // Another tenant sees none of them.
        let theirs = s.list(&other, 20, None, None).await.unwrap();
        assert_eq!(theirs.items.len(), 1);
        let id = LocationId::parse("b-store").unwrap();
        assert!(matches!(
            s.delete(&other, &id).await,
            Err(ApiError::LocationNotFound)
        ));
        s.delete(&tenant, &id).await.unwrap();
        assert!(matches!(
            s.get(&tenant, &id, None).await,
            Err(ApiError::LocationNotFound)
        ));
        assert!(matches!(
            s.delete(&tenant, &id).await,
            Err(ApiError::LocationNotFound)
        ));
    }

    #[tokio::test]
    async fn stock_at_a_location_pins_it_until_taken_away() {
        use crate::domain::{Adjustment, MovementContext, NewItem, Sku};
        use crate::items::{AdjustOutcome, ItemsService};
        let store = Arc::new(MemoryItemStore::default());
        let locations = LocationsService::new(store.clone());
        let items = ItemsService::new(store.clone()).with_locations(crate::items::LevelStores {
            locations: store.clone(),
            levels: store.clone(),
            holds: store.clone(),
        });
        let tenant = TenantId::parse("acme").unwrap();
        let ctx = MovementContext::default();
        let sku = Sku::parse("S-1").unwrap();
        items
            .create(
                &tenant,
                NewItem::from_json(&json!({"sku": "S-1", "name": "n", "quantity": 2})).unwrap(),
                &ctx,
            )
            .await
            .unwrap();
        locations.create(&tenant, new("depot")).await.unwrap();
        let at = |delta: i64, location: &str| {
            Adjustment::from_json(&json!({"delta": delta, "reason": "r", "location": location}))
                .unwrap()
        };
        let quantity = |outcome: AdjustOutcome| match outcome {
            AdjustOutcome::Applied(r) => r.quantity,
            AdjustOutcome::Replayed { .. } => -1,
        };
        let adjusted = items
            .adjust(&tenant, &sku, &at(4, "depot"), &ctx, None)
            .await;
        assert_eq!(adjusted.map(quantity).ok(), Some(4));
        assert!(matches!(
            items
                .adjust(&tenant, &sku, &at(-5, "depot"), &ctx, None)
                .await,
            Err(ApiError::InsufficientStock { available: 4, .. })
        ));
        assert!(matches!(
            items
                .adjust(&tenant, &sku, &at(1, "elsewhere"), &ctx, None)
                .await,
            Err(ApiError::LocationNotFound)
        ));
        let depot = LocationId::parse("depot").unwrap();
        assert!(matches!(
            locations.delete(&tenant, &depot).await,
            Err(ApiError::LocationHoldsStock)
        ));
        let levels = items.levels(&tenant, &sku).await.unwrap();
        let on_hand: Vec<(String, i64)> = levels
            .levels
            .into_iter()
            .map(|l| (l.location, l.on_hand))
            .collect();
        assert_eq!(on_hand, [("default".into(), 2), ("depot".into(), 4)]);

        let emptied = items
            .adjust(&tenant, &sku, &at(-4, "depot"), &ctx, None)
            .await;
        assert_eq!(emptied.map(quantity).ok(), Some(0));
        locations.delete(&tenant, &depot).await.unwrap();
        assert!(matches!(
            items
                .adjust(&tenant, &sku, &at(1, "depot"), &ctx, None)
                .await,
            Err(ApiError::LocationNotFound)
        ));
    }
}
