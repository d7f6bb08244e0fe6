//! Known contacts (I5 `known_contacts`, parties): addresses mapped to record references. Parsed
//! here from the contacts file or an API body; pure, so every format rule is unit-tested.
//!
//! Formats: CSV, one `address,record[,record…]` per line (an `address,…` header line, blank
//! lines and `#` comments are allowed); JSON, `{"address": "record" | ["record", …]}` or
//! `[{"address": …, "records": […]}]`.

use serde_json::Value;

use super::parties::{bare_address, check_record};

/// Contacts in one request or file, at most.
pub const MAX_CONTACTS: usize = 1_000_000;

pub type Contacts = Vec<(String, Vec<String>)>;

/// One address and its records, checked: the address lower case, records deduplicated.
fn entry(
    address: &str,
    records: Vec<String>,
    place: &str,
) -> Result<(String, Vec<String>), String> {
    let a = bare_address(address.trim())
        .filter(|a| a.len() <= 320 && a.trim() == address.trim().to_lowercase())
        .ok_or_else(|| format!("{place}: \"{}\" is not an email address", address.trim()))?;
    if records.is_empty() {
        return Err(format!("{place}: {a} has no record"));
    }
    let mut out: Vec<String> = Vec::new();
    for r in records {
        let r = r.trim().to_string();
        check_record(&r).map_err(|e| format!("{place}: {e}"))?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok((a, out))
}

pub fn parse_csv(text: &str) -> Result<Contacts, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        let address = fields.next().unwrap_or_default();
        if i == 0 && matches!(address.to_ascii_lowercase().as_str(), "address" | "email") {
            continue;
        }
        let records: Vec<String> = fields
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        out.push(entry(address, records, &format!("line {}", i + 1))?);
        if out.len() > MAX_CONTACTS {
            return Err(format!("more than {MAX_CONTACTS} contacts"));
        }
    }
    Ok(out)
}

pub fn parse_json(v: &Value) -> Result<Contacts, String> {
    let records_of = |v: &Value, place: &str| -> Result<Vec<String>, String> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(a) => a
                .iter()
                .map(|r| {
                    r.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{place}: a record must be a string"))
                })
                .collect(),
            _ => Err(format!(
                "{place}: records must be a string or a list of strings"
            )),
        }
    };
    let mut out = Vec::new();
    match v {
        Value::Object(map) => {
            for (address, records) in map {
                out.push(entry(address, records_of(records, address)?, address)?);
            }
        }
        Value::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                let place = format!("contact {}", i + 1);
                let address = item
                    .get("address")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{place}: \"address\" is missing"))?;
                let records = item
                    .get("records")
                    .or_else(|| item.get("record"))
                    .ok_or_else(|| format!("{place}: \"records\" is missing"))?;
                out.push(entry(address, records_of(records, &place)?, &place)?);
            }
        }
        _ => return Err("contacts must be a JSON object or list".to_string()),
    }
    if out.len() > MAX_CONTACTS {
        return Err(format!("more than {MAX_CONTACTS} contacts"));
    }
    Ok(out)
}

/// The contacts file, by its extension: `.json`, else CSV.
pub fn parse_file(path: &std::path::Path) -> Result<Contacts, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("contacts_file {}: {e}", path.display()))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if json {
        serde_json::from_str(&text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| parse_json(&v))
    } else {
        parse_csv(&text)
    };
    parsed.map_err(|e| format!("contacts_file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_comments_and_several_records() {
        let c = parse_csv(
            "address,record\n# sales\nCarol@Contoso.com, contact:42, account:contoso\n\n\
             erin@fabrikam.com,account:fabrikam,account:fabrikam\n",
        )
        .expect("parses");
        assert_eq!(
            c,
            vec![
                (
                    "carol@contoso.com".to_string(),
                    vec!["contact:42".to_string(), "account:contoso".to_string()]
                ),
                (
                    "erin@fabrikam.com".to_string(),
                    vec!["account:fabrikam".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse_csv("a@x,contact:1\nnot-an-address,contact:2\n").expect_err("bad"),
            "line 2: \"not-an-address\" is not an email address"
        );
        assert!(
            parse_csv("a@x\n")
                .expect_err("no record")
                .contains("line 1: a@x has no record")
        );
        assert!(
            parse_csv("a@x,Contact 1\n")
                .expect_err("bad record")
                .starts_with("line 1:")
        );
        assert!(
            parse_csv("Name <a@x>,contact:1\n").is_err(),
            "a bare address only"
        );
    }

    #[test]
    fn json_object_and_list() {
        let v: Value = serde_json::json!({"a@x": "contact:1", "b@x": ["lead:2", "account:b"]});
        assert_eq!(parse_json(&v).expect("object").len(), 2);
        let v: Value = serde_json::json!([{"address": "a@x", "records": ["contact:1"]}, {"address": "b@x", "record": "lead:2"}]);
        assert_eq!(parse_json(&v).expect("list")[1].1, vec!["lead:2"]);
        assert!(parse_json(&serde_json::json!([{"records": ["contact:1"]}])).is_err());
        assert!(parse_json(&serde_json::json!({"a@x": 7})).is_err());
        assert!(parse_json(&serde_json::json!("a@x")).is_err());
    }
}
