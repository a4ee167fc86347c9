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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    #[param(value_type = Option<mailgate_core::model::Direction>)]
    direction: Option<String>,
    account: Option<String>,
    /// Words to find in addresses, subject and body.
    q: Option<String>,
    /// Only records from this time on (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50; larger values are capped).
    #[param(minimum = 1)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/traffic",
    tag = "traffic",
    operation_id = "list_traffic",
    summary = "Search the traffic log",
    params(Params),
    responses(
        (status = 200, description = "A page of traffic entries", body = PageView<TrafficView>),
    ),
)]
pub async fn list(State(state): State<AppState>, caller: Caller, ApiQuery(p): ApiQuery<Params>) -> ApiResult<Json<PageView<TrafficView>>> {
    caller.require_admin()?;
    let mut errors = ValidationErrors::new();
    let direction = match p.direction.as_deref() {
        None => None,
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
    let (limit, offset) = Paging { limit: p.limit, offset: p.offset }.resolve()?;
    let filter = TrafficFilter { direction, account_name: p.account.filter(|a| !a.is_empty()), query: p.q, since, until, limit, offset };
    let page = state.store.list_traffic(&filter).await?;
    Ok(Json(PageView { items: page.items.iter().map(TrafficView::from).collect(), total: page.total, limit, offset }))
}
