//! Items API Lambda: API Gateway REST proxy events -> the shared axum router.

use lambda_http::Error;
use std::sync::Arc;
use stockroom_app::changes::ChangeFeed;
use stockroom_app::config;
use stockroom_app::counts::CountsService;
use stockroom_app::cursor::CursorCodec;
use stockroom_app::items::{ItemsService, LevelStores};
use stockroom_app::locations::LocationsService;
use stockroom_app::reservations::ReservationsService;
use stockroom_app::stock_split::StockSplitService;
use stockroom_app::transfers::TransfersService;
use stockroom_aws::dynamodb::{DynamoItemStore, WriteLayout};
use stockroom_aws::{runtime, sdk};
use stockroom_http::{AppState, router};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init();
    let metrics = runtime::metrics("items-api")?;
    let cfg = config::ItemsApiConfig::from_env()?;
    let sdk = sdk::aws_sdk_config().await;
    let layout = WriteLayout::sharded_if(config::sharded_writes()?);
    let store =
        Arc::new(DynamoItemStore::from_sdk_config(&sdk, cfg.stock_table).with_write_layout(layout));
    let stores = LevelStores {
        locations: store.clone(),
        levels: store.clone(),
        holds: store.clone(),
    };
    let state = AppState {
        changes: ChangeFeed::new(store.clone(), cfg.changes_settle),
        locations: LocationsService::new(store.clone()),
        items: ItemsService::new(store.clone()).with_locations(stores.clone()),
        reservations: ReservationsService::new(store.clone(), stores.clone()),
        transfers: TransfersService::new(store.clone(), stores.clone()),
        counts: CountsService::new(store.clone(), stores.clone()),
        stock_splits: StockSplitService::new(store.clone(), stores),
        cursors: CursorCodec::new(cfg.cursor_signing_key),
        function: config::function_name("items-api"),
    };
    runtime::emf::lambda::service::run_http(metrics, router(state)).await
}
