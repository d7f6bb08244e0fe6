//! The API's tracking writes: known contacts (`PUT /api/v1/contacts`) and what an activity is
//! about (`PUT /api/v1/activities/{id}/regarding`). Both are idempotent: the same request twice
//! leaves the same store.

use serde_json::{Value, json};

use super::StatusContext;
use super::error::{ApiError, err};
use crate::store::ContactsUpdate;
use crate::tracking::contacts::{MAX_CONTACTS, parse_json};
use crate::tracking::parties::{bare_address, check_record};

/// A bulk contacts request is larger than the other small JSON bodies.
pub const MAX_CONTACTS_BODY: u64 = 64 * 1024 * 1024;

/// `PUT /api/v1/contacts` with `{"upsert": {address: record | [records]} or [{address, records}],
/// "delete": [address], "replace": false}`. `replace: true` makes the request the whole list.
pub fn put_contacts(ctx: &StatusContext, body: &[u8]) -> Result<(u16, Value), ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| err(400, format!("the request body is not JSON: {e}")))?;
    let Value::Object(fields) = &v else {
        return Err(err(
            400,
            "the body must be a JSON object with upsert, delete, replace",
        ));
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["upsert", "delete", "replace"].contains(&k.as_str()))
    {
        return Err(err(
            400,
            format!("unknown field \"{k}\" (use upsert, delete, replace)"),
        ));
    }
    let upsert = match fields.get("upsert") {
        None => Vec::new(),
        Some(u) => parse_json(u).map_err(|e| err(400, format!("upsert: {e}")))?,
    };
    let mut delete = Vec::new();
    match fields.get("delete") {
        None => {}
        Some(Value::Array(list)) => {
            for (i, a) in list.iter().enumerate() {
                let address = a
                    .as_str()
                    .and_then(bare_address)
                    .ok_or_else(|| err(400, format!("delete[{i}]: not an email address")))?;
                delete.push(address);
            }
        }
        Some(_) => return Err(err(400, "delete must be a list of addresses")),
    }
    if delete.len() > MAX_CONTACTS {
        return Err(err(
            400,
            format!("delete: more than {MAX_CONTACTS} addresses"),
        ));
    }
    let replace = match fields.get("replace") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(400, "replace must be true or false")),
    };
    let (upserted, deleted) = (upsert.len(), delete.len());
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    writer
        .contacts_blocking(ContactsUpdate {
            upsert,
            delete,
            replace,
        })
        .map_err(|e| err(503, e.to_string()))?;
    let total = ctx
        .store
        .contact_count()
        .map_err(|e| err(500, e.to_string()))?;
    tracing::info!(
        upserted,
        deleted,
        replace,
        total,
        "known contacts changed through the API"
    );
    Ok((
        200,
        json!({ "upserted": upserted, "deleted": deleted, "replaced": replace, "contacts": total }),
    ))
}

/// `PUT /api/v1/activities/{id}/regarding` with `{"regarding": "account:contoso"}` (or null to
/// clear it).
pub fn put_regarding(
    ctx: &StatusContext,
    id: &str,
    body: Option<Value>,
) -> Result<(u16, Value), ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| err(400, format!("\"{id}\" is not an activity id")))?;
    let regarding = match body.as_ref().map(|b| b.get("regarding")) {
        None | Some(None) => {
            return Err(err(
                400,
                "the body must be {\"regarding\": \"type:id\"} or {\"regarding\": null}",
            ));
        }
        Some(Some(Value::Null)) => None,
        Some(Some(Value::String(r))) => {
            check_record(r).map_err(|e| err(400, format!("regarding: {e}")))?;
            Some(r.trim().to_string())
        }
        Some(Some(_)) => return Err(err(400, "regarding must be a string or null")),
    };
    if ctx
        .store
        .activity(id)
        .map_err(|e| err(500, e.to_string()))?
        .is_none()
    {
        return Err(err(404, format!("no activity {id}")));
    }
    let writer = ctx
        .writer
        .as_ref()
        .ok_or_else(|| err(503, "the store writer is not running"))?;
    writer
        .regarding_blocking(id, regarding.clone())
        .map_err(|e| err(503, e.to_string()))?;
    tracing::info!(
        activity = id,
        regarding = regarding.as_deref().unwrap_or(""),
        "regarding set through the API"
    );
    Ok((200, json!({ "id": id, "regarding": regarding })))
}
