//! `/api/v1/traffic`: the log of mail sent and received.

use axum::Json;
use axum::extract::State;
use mailgate_core::model::Direction;
use mailgate_core::{ValidationErrors, rfc3339_to_millis};
use mailgate_store::TrafficFilter;
use serde::Deserialize;

use super::views::{PageView, TrafficView};
use super::json::ApiQuery;
use super::{Caller, Paging};
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct Params {
    direction: Option<String>,
    account: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

pub async fn list(State(state): State<AppState>, caller: Caller, ApiQuery(p): ApiQuery<Params>) -> ApiResult<Json<PageView<TrafficView>>> {
    caller.require_admin()?;
    let mut errors = ValidationErrors::new();
    let direction = match p.direction.as_deref() {
        None | Some("") => None,
        Some(d) => {
            let parsed = Direction::parse(d);
            if parsed.is_none() {
                errors.add("direction", "must be in or out");
            }
            parsed
        }
    };
    let mut time = |field: &str, v: Option<&str>| {
        let v = v?;
        let t = rfc3339_to_millis(v);
        if t.is_none() {
            errors.add(field, "must be an RFC 3339 time");
        }
        t
    };
    let since = time("since", p.since.as_deref());
    let until = time("until", p.until.as_deref());
    errors.into_result(())?;
    let (limit, offset) = Paging { limit: p.limit, offset: p.offset }.resolve();
    let filter = TrafficFilter { direction, account_name: p.account.filter(|a| !a.is_empty()), query: p.q, since, until, limit, offset };
    let page = state.store.list_traffic(&filter).await?;
    Ok(Json(PageView { items: page.items.iter().map(TrafficView::from).collect(), total: page.total, limit, offset }))
}
