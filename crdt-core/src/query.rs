//! Queries: pure evaluation over a replica, and incremental re-evaluation for live queries.
//!
//! A query filters one collection with conditions that must all hold, orders by fields (then
//! by id), and applies an offset and a limit. Soft-deleted documents are left out unless
//! asked for. The pseudo-field `_id` is the document id.
//!
//! Comparisons follow [`Value::total_cmp`]: numbers compare by value whatever their type;
//! `<`, `<=`, `>`, `>=` only hold between values of the same kind (a string is never less than
//! a number); a missing field reads as null.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::error::QueryError;
use crate::replica::{DocumentRef, Replica};
use crate::value::Value;

/// A document's position in a query's order: the values of the order fields, then its id.
type SortKey = (Vec<Value>, Box<str>);

/// The pseudo-field that names the document id in conditions and orderings.
pub const ID_FIELD: &str = "_id";

/// A comparison against a field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Equal (numbers by value).
    Eq(Value),
    /// Not equal.
    Ne(Value),
    /// Less than, same kind only.
    Lt(Value),
    /// Less than or equal, same kind only.
    Le(Value),
    /// Greater than, same kind only.
    Gt(Value),
    /// Greater than or equal, same kind only.
    Ge(Value),
    /// Equal to one of the values.
    In(Vec<Value>),
    /// Present and not null (`true`), or missing or null (`false`).
    Exists(bool),
}

impl Op {
    fn matches(&self, value: &Value) -> bool {
        let same_kind_cmp = |other: &Value, pred: fn(Ordering) -> bool| {
            !value.is_null() && value.rank() == other.rank() && pred(value.total_cmp(other))
        };
        match self {
            Op::Eq(v) => value.query_eq(v),
            Op::Ne(v) => !value.query_eq(v),
            Op::Lt(v) => same_kind_cmp(v, Ordering::is_lt),
            Op::Le(v) => same_kind_cmp(v, Ordering::is_le),
            Op::Gt(v) => same_kind_cmp(v, Ordering::is_gt),
            Op::Ge(v) => same_kind_cmp(v, Ordering::is_ge),
            Op::In(vs) => vs.iter().any(|v| value.query_eq(v)),
            Op::Exists(wanted) => value.is_null() != *wanted,
        }
    }
}

/// One condition: `field op value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The field (or [`ID_FIELD`]).
    pub field: String,
    /// The comparison.
    pub op: Op,
}

/// One ordering key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBy {
    /// The field (or [`ID_FIELD`]).
    pub field: String,
    /// Greatest first.
    pub descending: bool,
}

/// A query over one collection. Build it with methods or from JSON ([`Query::from_json`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    collection: String,
    conditions: Vec<Condition>,
    order: Vec<OrderBy>,
    limit: Option<usize>,
    offset: usize,
    include_deleted: bool,
}

impl Query {
    /// All live documents of `collection`, ordered by id.
    pub fn new(collection: impl Into<String>) -> Query {
        Query {
            collection: collection.into(),
            conditions: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: 0,
            include_deleted: false,
        }
    }

    /// Adds a condition that must hold.
    pub fn filter(mut self, field: impl Into<String>, op: Op) -> Query {
        self.conditions.push(Condition {
            field: field.into(),
            op,
        });
        self
    }

    /// Orders by `field`, smallest first (after earlier orderings).
    pub fn order_by(mut self, field: impl Into<String>) -> Query {
        self.order.push(OrderBy {
            field: field.into(),
            descending: false,
        });
        self
    }

    /// Orders by `field`, greatest first (after earlier orderings).
    pub fn order_by_desc(mut self, field: impl Into<String>) -> Query {
        self.order.push(OrderBy {
            field: field.into(),
            descending: true,
        });
        self
    }

    /// Returns at most `n` documents.
    pub fn limit(mut self, n: usize) -> Query {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` matching documents.
    pub fn offset(mut self, n: usize) -> Query {
        self.offset = n;
        self
    }

    /// Includes soft-deleted documents.
    pub fn include_deleted(mut self) -> Query {
        self.include_deleted = true;
        self
    }

    /// The collection queried.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Parses the JSON form used by the bindings:
    ///
    /// ```json
    /// { "collection": "orders",
    ///   "where": { "status": "open", "total": { ">=": 10, "<": 100 },
    ///              "table": { "in": [1, 2] }, "note": { "exists": true } },
    ///   "orderBy": ["-createdAt", "_id"],
    ///   "limit": 20, "offset": 0, "includeDeleted": false }
    /// ```
    ///
    /// A `where` entry is either a value (equality) or an object of operators (`=`, `!=`, `<`,
    /// `<=`, `>`, `>=`, `in`, `exists`). An `orderBy` entry is a field name, with a leading `-`
    /// for descending order, or `{ "field": …, "direction": "asc" | "desc" }`.
    pub fn from_json(json: &serde_json::Value) -> Result<Query, QueryError> {
        let err = |msg: String| QueryError(msg);
        let object = json
            .as_object()
            .ok_or_else(|| err("a query must be a JSON object".into()))?;
        for key in object.keys() {
            if ![
                "collection",
                "where",
                "orderBy",
                "limit",
                "offset",
                "includeDeleted",
            ]
            .contains(&key.as_str())
            {
                return Err(err(format!("unknown query key {key:?}")));
            }
        }
        let collection = object
            .get("collection")
            .and_then(|c| c.as_str())
            .ok_or_else(|| err("\"collection\" must be a string".into()))?;
        let mut query = Query::new(collection);
        if let Some(conditions) = object.get("where") {
            let conditions = conditions
                .as_object()
                .ok_or_else(|| err("\"where\" must be an object of field conditions".into()))?;
            for (field, condition) in conditions {
                for op in parse_condition(field, condition)? {
                    query = query.filter(field.as_str(), op);
                }
            }
        }
        match object.get("orderBy") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(keys)) => {
                for key in keys {
                    query.order.push(parse_order(key)?);
                }
            }
            Some(key) => query.order.push(parse_order(key)?),
        }
        let count = |key: &str| -> Result<Option<usize>, QueryError> {
            match object.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n.min(usize::MAX as u64) as usize))
                    .ok_or_else(|| err(format!("\"{key}\" must be a non-negative integer"))),
            }
        };
        query.limit = count("limit")?;
        query.offset = count("offset")?.unwrap_or(0);
        query.include_deleted = match object.get("includeDeleted") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(err("\"includeDeleted\" must be a boolean".into())),
        };
        Ok(query)
    }

    fn field_value<'a>(doc: &DocumentRef<'a>, field: &str) -> std::borrow::Cow<'a, Value> {
        if field == ID_FIELD {
            return std::borrow::Cow::Owned(Value::from(doc.id()));
        }
        doc.get(field)
            .unwrap_or(std::borrow::Cow::Owned(Value::Null))
    }

    /// Whether a document satisfies the conditions (ignoring order, limit and offset).
    pub fn matches(&self, doc: &DocumentRef<'_>) -> bool {
        doc.collection() == self.collection
            && (self.include_deleted || !doc.is_deleted())
            && self
                .conditions
                .iter()
                .all(|c| c.op.matches(&Query::field_value(doc, &c.field)))
    }

    fn sort_key(&self, doc: &DocumentRef<'_>) -> Vec<Value> {
        self.order
            .iter()
            .map(|o| Query::field_value(doc, &o.field).into_owned())
            .collect()
    }

    fn cmp_keys(&self, a: &SortKey, b: &SortKey) -> Ordering {
        for ((x, y), order) in a.0.iter().zip(&b.0).zip(&self.order) {
            let o = x.total_cmp(y);
            let o = if order.descending { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.1.cmp(&b.1)
    }

    fn window(&self, len: usize) -> std::ops::Range<usize> {
        let start = self.offset.min(len);
        let end = match self.limit {
            Some(limit) => start.saturating_add(limit).min(len),
            None => len,
        };
        start..end
    }

    pub(crate) fn run<'a>(&self, replica: &'a Replica) -> Vec<DocumentRef<'a>> {
        let candidates = replica
            .documents_any(&self.collection)
            .filter(|d| self.matches(d));
        if self.order.is_empty() {
            // Documents come in id order already: stop as soon as the window is full.
            let take = self
                .limit
                .map_or(usize::MAX, |l| l.saturating_add(self.offset));
            return candidates.take(take).skip(self.offset).collect();
        }
        let mut keyed: Vec<(SortKey, DocumentRef<'a>)> = candidates
            .map(|d| ((self.sort_key(&d), Box::from(d.id())), d))
            .collect();
        keyed.sort_by(|a, b| self.cmp_keys(&a.0, &b.0));
        let window = self.window(keyed.len());
        keyed.drain(window).map(|(_, d)| d).collect()
    }
}

fn parse_condition(field: &str, condition: &serde_json::Value) -> Result<Vec<Op>, QueryError> {
    const OPERATORS: [&str; 9] = ["=", "==", "!=", "<", "<=", ">", ">=", "in", "exists"];
    let operators = match condition {
        serde_json::Value::Object(map)
            if !map.is_empty() && map.keys().all(|k| OPERATORS.contains(&k.as_str())) =>
        {
            map
        }
        serde_json::Value::Object(map) if map.keys().any(|k| OPERATORS.contains(&k.as_str())) => {
            let unknown = map.keys().find(|k| !OPERATORS.contains(&k.as_str()));
            return Err(QueryError(format!(
                "unknown operator {:?} on field {field:?}; use one of {OPERATORS:?}",
                unknown.map(String::as_str).unwrap_or_default()
            )));
        }
        value => return Ok(vec![Op::Eq(Value::from(value.clone()))]),
    };
    let mut ops = Vec::new();
    for (name, operand) in operators {
        let value = || Value::from(operand.clone());
        ops.push(match name.as_str() {
            "=" | "==" => Op::Eq(value()),
            "!=" => Op::Ne(value()),
            "<" => Op::Lt(value()),
            "<=" => Op::Le(value()),
            ">" => Op::Gt(value()),
            ">=" => Op::Ge(value()),
            "in" => match operand {
                serde_json::Value::Array(items) => {
                    Op::In(items.iter().cloned().map(Value::from).collect())
                }
                _ => {
                    return Err(QueryError(format!(
                        "\"in\" on field {field:?} needs an array"
                    )));
                }
            },
            _ => match operand {
                serde_json::Value::Bool(b) => Op::Exists(*b),
                _ => {
                    return Err(QueryError(format!(
                        "\"exists\" on field {field:?} needs true or false"
                    )));
                }
            },
        });
    }
    Ok(ops)
}

fn parse_order(key: &serde_json::Value) -> Result<OrderBy, QueryError> {
    match key {
        serde_json::Value::String(s) => Ok(match s.strip_prefix('-') {
            Some(field) => OrderBy {
                field: field.to_string(),
                descending: true,
            },
            None => OrderBy {
                field: s.clone(),
                descending: false,
            },
        }),
        serde_json::Value::Object(map) => {
            let field = map
                .get("field")
                .and_then(|f| f.as_str())
                .ok_or_else(|| QueryError("an orderBy object needs a \"field\" string".into()))?;
            let descending = match map.get("direction").and_then(|d| d.as_str()) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(QueryError(format!(
                        "orderBy direction {other:?} is not \"asc\" or \"desc\""
                    )));
                }
            };
            Ok(OrderBy {
                field: field.to_string(),
                descending,
            })
        }
        _ => Err(QueryError(
            "orderBy entries are field names or {field, direction} objects".into(),
        )),
    }
}

/// A query kept up to date as documents change, for `observe` callbacks.
///
/// It remembers every matching document's sort key, so re-checking after a change costs
/// `O(changed · log matches)`, not a new scan, and it reports precisely whether the visible
/// window (after offset and limit) changed.
#[derive(Clone, Debug)]
pub struct LiveQuery {
    query: Query,
    /// Matching documents, sorted by the query's order.
    matches: Vec<SortKey>,
    keys: HashMap<Box<str>, Vec<Value>>,
}

impl LiveQuery {
    /// Evaluates `query` on `replica` and starts tracking it.
    pub fn new(query: Query, replica: &Replica) -> LiveQuery {
        let mut matches: Vec<SortKey> = replica
            .documents_any(&query.collection)
            .filter(|d| query.matches(d))
            .map(|d| (query.sort_key(&d), Box::from(d.id())))
            .collect();
        matches.sort_by(|a, b| query.cmp_keys(a, b));
        let keys = matches
            .iter()
            .map(|(k, id)| (id.clone(), k.clone()))
            .collect();
        LiveQuery {
            query,
            matches,
            keys,
        }
    }

    /// The query.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Ids of the documents in the result, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.matches[self.query.window(self.matches.len())]
            .iter()
            .map(|(_, id)| &**id)
    }

    /// The documents in the result, in order.
    pub fn results<'a>(&self, replica: &'a Replica) -> Vec<DocumentRef<'a>> {
        self.ids()
            .filter_map(|id| replica.get_any(&self.query.collection, id))
            .collect()
    }

    /// Re-checks the documents of the query's collection that changed (e.g. from
    /// [`Replica::merge`] or a local write) and returns whether the result changed: a document
    /// entered or left it, moved within it, or changed while in it.
    pub fn update<'i>(
        &mut self,
        replica: &Replica,
        changed_ids: impl IntoIterator<Item = &'i str>,
    ) -> bool {
        let before: Vec<Box<str>> = self.ids().map(Box::from).collect();
        let in_window: HashSet<&str> = before.iter().map(|b| &**b).collect();
        let mut touched_window = false;
        for id in changed_ids {
            touched_window |= in_window.contains(id);
            if let Some(old_key) = self.keys.remove(id) {
                let probe = (old_key, Box::from(id));
                if let Ok(at) = self
                    .matches
                    .binary_search_by(|m| self.query.cmp_keys(m, &probe))
                {
                    self.matches.remove(at);
                }
            }
            let Some(doc) = replica.get_any(&self.query.collection, id) else {
                continue;
            };
            if self.query.matches(&doc) {
                let entry = (self.query.sort_key(&doc), Box::from(id));
                let at = self
                    .matches
                    .binary_search_by(|m| self.query.cmp_keys(m, &entry))
                    .unwrap_or_else(|at| at);
                self.keys.insert(entry.1.clone(), entry.0.clone());
                self.matches.insert(at, entry);
            }
        }
        touched_window || !self.ids().eq(before.iter().map(|b| &**b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceId;
    use serde_json::json;

    fn replica_with_orders() -> Replica {
        let mut replica = Replica::new(DeviceId::from_bytes([1; 32]));
        replica
            .write(1_000, |w| {
                for (id, table, total, status) in [
                    ("o1", 4, 12.5, "open"),
                    ("o2", 2, 30.0, "open"),
                    ("o3", 4, 8.0, "done"),
                    ("o4", 7, 99.0, "open"),
                ] {
                    w.upsert(
                        "orders",
                        id,
                        [
                            ("table", Value::from(table)),
                            ("total", Value::from(total)),
                            ("status", Value::from(status)),
                        ],
                    )?;
                }
                w.set("orders", "o5", "status", "open")?;
                w.delete("orders", "o4")
            })
            .unwrap();
        replica
    }

    fn ids(docs: &[DocumentRef<'_>]) -> Vec<String> {
        docs.iter().map(|d| d.id().to_string()).collect()
    }

    #[test]
    fn filters_combine_and_skip_deleted_documents() {
        let replica = replica_with_orders();
        let q = Query::new("orders").filter("status", Op::Eq("open".into()));
        assert_eq!(ids(&replica.find(&q)), ["o1", "o2", "o5"]);
        let q = q.filter("total", Op::Gt(Value::Int(10)));
        assert_eq!(ids(&replica.find(&q)), ["o1", "o2"]);
        let q = Query::new("orders")
            .include_deleted()
            .filter("table", Op::In(vec![7.into()]));
        assert_eq!(ids(&replica.find(&q)), ["o4"]);
    }

    #[test]
    fn comparisons_need_the_same_kind_and_missing_reads_as_null() {
        let replica = replica_with_orders();
        let q = Query::new("orders").filter("status", Op::Lt(Value::Int(100)));
        assert!(
            replica.find(&q).is_empty(),
            "strings are never less than numbers"
        );
        let q = Query::new("orders").filter("total", Op::Exists(false));
        assert_eq!(ids(&replica.find(&q)), ["o5"]);
        let q = Query::new("orders").filter("total", Op::Ne(Value::Float(12.5)));
        assert_eq!(ids(&replica.find(&q)), ["o2", "o3", "o5"]);
    }

    #[test]
    fn order_limit_and_offset_apply_in_that_order() {
        let replica = replica_with_orders();
        let q = Query::new("orders").order_by_desc("total");
        assert_eq!(
            ids(&replica.find(&q)),
            ["o2", "o1", "o3", "o5"],
            "null sorts lowest"
        );
        let q = q.offset(1).limit(2);
        assert_eq!(ids(&replica.find(&q)), ["o1", "o3"]);
        let q = Query::new("orders")
            .order_by("table")
            .order_by_desc(ID_FIELD);
        assert_eq!(ids(&replica.find(&q)), ["o5", "o2", "o3", "o1"]);
        let q = Query::new("orders").offset(10);
        assert!(replica.find(&q).is_empty());
    }

    #[test]
    fn json_form_parses_and_rejects_clearly() {
        let replica = replica_with_orders();
        let q = Query::from_json(&json!({
            "collection": "orders",
            "where": {"status": "open", "total": {">=": 12.5, "<": 100}},
            "orderBy": ["-total"],
            "limit": 5
        }))
        .unwrap();
        assert_eq!(ids(&replica.find(&q)), ["o2", "o1"]);
        for bad in [
            json!({"collection": "orders", "where": {"a": {"<": 1, "~": 2}}}),
            json!({"collection": "orders", "where": {"a": {"in": 1}}}),
            json!({"collection": "orders", "limit": -1}),
            json!({"collection": "orders", "sort": "a"}),
            json!({"where": {}}),
            json!({"collection": "orders", "orderBy": [{"field": "a", "direction": "up"}]}),
        ] {
            let e = Query::from_json(&bad).unwrap_err();
            assert_eq!(e.code(), "query.invalid");
        }
    }

    #[test]
    fn live_query_reports_only_changes_to_its_window() {
        let mut replica = replica_with_orders();
        let query = Query::new("orders")
            .filter("status", Op::Eq("open".into()))
            .order_by("total")
            .limit(2);
        let mut live = LiveQuery::new(query.clone(), &replica);
        assert_eq!(live.ids().collect::<Vec<_>>(), ["o5", "o1"]);

        // o3 is done: editing it leaves the result alone.
        let changes = replica
            .write(2_000, |w| w.set("orders", "o3", "total", 1.0))
            .unwrap();
        let changed = replica.merge(&changes, 2_000);
        assert!(
            changed.is_empty(),
            "merging own changes again changes nothing"
        );
        assert!(!live.update(&replica, ["o3"]));

        // o2 reopens below o1's total: it enters the window and pushes o1 out.
        replica
            .write(3_000, |w| w.set("orders", "o2", "total", 1.0))
            .unwrap();
        assert!(live.update(&replica, ["o2"]));
        assert_eq!(live.ids().collect::<Vec<_>>(), ["o5", "o2"]);

        // A change inside the window is a change of the result even if the order holds.
        replica
            .write(4_000, |w| w.set("orders", "o5", "note", "x"))
            .unwrap();
        assert!(live.update(&replica, ["o5"]));

        // Deleting a document in the window lets the next one in.
        replica.write(5_000, |w| w.delete("orders", "o2")).unwrap();
        assert!(live.update(&replica, ["o2"]));
        assert_eq!(live.ids().collect::<Vec<_>>(), ["o5", "o1"]);

        let fresh: Vec<_> = replica
            .find(&query)
            .iter()
            .map(|d| d.id().to_string())
            .collect();
        assert_eq!(
            live.ids().collect::<Vec<_>>(),
            fresh,
            "incremental equals full evaluation"
        );
    }
}
