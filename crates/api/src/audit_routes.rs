//! The audit log for a tenant's administrators: query, streaming export (JSON lines,
//! for SIEM ingestion) and verification of the tenant's chain. Reading the log is
//! itself recorded.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guard_core::audit::{AuditFilter, InvalidParam, MAX_PAGE, Order, QueryParams};
use guard_core::events::{Event, EventSink};
use guard_proto::ErrorCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admin_routes::actor;
use crate::extract::{AppJson, AppQuery};
use crate::tenancy::{Caller, TenantAdmin};
use crate::{ApiError, AppState};

/// Records a page of an export holds.
const EXPORT_PAGE: u32 = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(query))
        .route("/v1/audit/export", get(export))
        .route("/v1/audit/verify", get(verify))
}

fn invalid(e: InvalidParam) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter).detail(e.to_string()).extension("parameter", json!(e.name))
}

fn filter(caller: &Caller, params: &QueryParams, order: Order, limit: u32) -> Result<AuditFilter, InvalidParam> {
    params.filter(Some(caller.tenant.id.0), order, limit, MAX_PAGE, OffsetDateTime::now_utc())
}

/// The event recording that `caller` read the log.
async fn record_access(state: &AppState, caller: &Caller, kind: &'static str, details: Value) {
    let event = Event::success(kind, actor(caller)).tenant(caller.tenant.id.0).details(details);
    state.audit.emit(event).await;
}

fn described(params: &QueryParams) -> Value {
    json!({
        "since": params.since, "until": params.until, "type": params.kind, "result": params.result,
        "actor": params.actor, "target": params.target,
    })
}

/// GET /v1/audit: newest first.
async fn query(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppQuery(params): AppQuery<QueryParams>,
) -> Result<AppJson<Value>, ApiError> {
    let filter = filter(&caller, &params, Order::NewestFirst, 100).map_err(invalid)?;
    let page = state.audit.query(&filter).await?;
    record_access(&state, &caller, "audit.events.read", described(&params)).await;
    Ok(AppJson(json!({
        "events": page.records.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

/// GET /v1/audit/export: every selected sealed record in chain order, one JSON object a line,
/// streamed page by page.
async fn export(
    State(state): State<AppState>,
    TenantAdmin(caller): TenantAdmin,
    AppQuery(params): AppQuery<QueryParams>,
) -> Result<Response, ApiError> {
    if params.limit.is_some() {
        return Err(invalid(InvalidParam {
            name: "limit",
            reason: "an export has no limit: narrow it with since and until".into(),
        }));
    }
    let first = filter(&caller, &params, Order::Chain, EXPORT_PAGE).map_err(invalid)?;
    // The first page is read before answering, so that a database failure is a
    // problem document rather than a cut stream.
    let page = state.audit.query(&first).await?;
    record_access(&state, &caller, "audit.events.exported", described(&params)).await;
    let audit = state.audit.clone();
    let stream = futures_util::stream::unfold(Some((page, first)), move |next| {
        let audit = audit.clone();
        async move {
            let (page, mut filter) = next?;
            let mut lines = Vec::with_capacity(page.records.len() * 400);
            for record in &page.records {
                if serde_json::to_writer(&mut lines, &record.to_json()).is_err() {
                    return Some((Err(std::io::Error::other("cannot encode an audit record")), None));
                }
                lines.push(b'\n');
            }
            let following = match page.next_position {
                None => None,
                Some(position) => {
                    filter.after_position = Some(position);
                    match audit.query(&filter).await {
                        Ok(page) => Some((page, filter)),
                        Err(e) => {
                            tracing::error!(error = %e, "audit export stopped");
                            return Some((Err(std::io::Error::other("the audit export stopped")), None));
                        }
                    }
                }
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(lines)), following))
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

/// GET /v1/audit/verify: the tenant's chain, checked from its first kept record.
async fn verify(State(state): State<AppState>, TenantAdmin(caller): TenantAdmin) -> Result<AppJson<Value>, ApiError> {
    let report = state.audit.verify(Some(caller.tenant.id.0)).await?;
    let details = json!({ "intact": report.intact, "records": report.records });
    record_access(&state, &caller, "audit.chain.verified", details).await;
    Ok(AppJson(serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?))
}
