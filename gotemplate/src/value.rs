//! What Go would see in a JSON value: its type, its integer, a map's
//! entries in the order Go prints them. Shared by exec and fmt.

use serde_json::{Map, Number, Value};

/// Returns the entries of an object sorted by key, as Go prints maps.
pub(crate) fn sorted_entries(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<(&String, &Value)> = m.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Returns a number as an integer when JSON holds it as one.
pub(crate) fn int_of(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// The Go type that a JSON value would have when decoded into `any`,
/// except that integers are `int` rather than `float64`.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.as_i64().is_some() => "int",
        Value::Number(n) if n.as_u64().is_some() => "uint64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}
