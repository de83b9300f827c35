//! `docs/openapi.json` against the server: the document describes exactly the routes the server
//! has, and every documented operation reaches its handler and answers with a documented status,
//! headers and body.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;

use harness::{Response, TestServer, build, request, zip_build};
use serde_json::Value;

const ROUTE: &str = "https://m.example.com/checkout/";
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A value for each path or required query parameter the document names; the digest is the
/// seeded script's, so that `getBlob` finds it (and `getManifest` does not).
fn placeholder(name: &str) -> String {
    match name {
        "app" => "shop".into(),
        "channel" => "production".into(),
        "package" => "checkout".into(),
        "digest" => manifests::Digest::of(&vendor_script()).to_string(),
        "name" => "1.0.0.zip".into(),
        "version" => "1.0.0".into(),
        "from" => "1".into(),
        other => panic!("no placeholder for the parameter {other:?}; add one in tests/openapi.rs"),
    }
}

/// A script of a few KiB that every seeded release shares, large enough to get a gzip
/// representation.
fn vendor_script() -> Vec<u8> {
    (0..100)
        .map(|i| format!("export const value{i} = {i};\n"))
        .collect::<String>()
        .into_bytes()
}

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One operation of the document, its parameters resolved.
struct Operation<'a> {
    method: String,
    path: &'a str,
    op: &'a Value,
    parameters: Vec<&'a Value>,
}

impl Operation<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn is_secured(&self, doc: &Value) -> bool {
        let security = self.op.get("security").or_else(|| doc.get("security"));
        security.and_then(Value::as_array).is_some_and(|s| {
            s.iter()
                .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
        })
    }
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let shared = item.get("parameters").and_then(Value::as_array);
        for (method, op) in item.as_object().unwrap() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                continue;
            }
            let own = op.get("parameters").and_then(Value::as_array);
            let parameters = shared
                .into_iter()
                .chain(own)
                .flatten()
                .map(|p| resolve(doc, p))
                .collect();
            out.push(Operation {
                method: method.to_uppercase(),
                path,
                op,
                parameters,
            });
        }
    }
    out
}

/// The node a local `$ref` (`#/…`) points to.
fn pointer<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Follows `$ref`s until a node has none.
fn resolve<'a>(doc: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => node = pointer(doc, r).unwrap_or_else(|| panic!("{r} does not resolve")),
            None => return node,
        }
    }
    panic!("$ref chain too long at {node}")
}

fn references<'a>(node: &'a Value, out: &mut Vec<&'a str>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// Checks `value` against `schema` for the keywords the document uses. Patterns and formats are
/// not interpreted; instead, strings of the named contract types are checked with the parsers of
/// `manifests`, which are what the server and devices apply.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = pointer(doc, reference).unwrap_or_else(|| panic!("{reference} unresolved"));
        if let (Some(name), Some(text)) = (
            reference.strip_prefix("#/components/schemas/"),
            value.as_str(),
        ) && !parses_as(name, text)
        {
            errors.push(format!("{at}: {text:?} is not a valid {name}"));
        }
        validate(doc, target, value, at, errors);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(t) => t.iter().filter_map(Value::as_str).collect(),
            t => t.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| is_type(t, value)) {
            errors.push(format!("{at}: expected {types:?}, found {value}"));
            return;
        }
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        errors.push(format!("{at}: expected {expected}, found {value}"));
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {options:?}"));
    }
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = value.as_f64()
        && (number("minimum").is_some_and(|min| n < min)
            || number("maximum").is_some_and(|max| n > max))
    {
        errors.push(format!("{at}: {n} is out of range"));
    }
    let count = |key: &str| schema.get(key).and_then(Value::as_u64).map(|n| n as usize);
    let out_of = |len: usize, min: &str, max: &str| {
        count(min).is_some_and(|m| len < m) || count(max).is_some_and(|m| len > m)
    };
    if let Some(text) = value.as_str()
        && out_of(text.chars().count(), "minLength", "maxLength")
    {
        errors.push(format!("{at}: length of {text:?} is out of range"));
    }
    if let Some(items) = value.as_array() {
        if out_of(items.len(), "minItems", "maxItems") {
            errors.push(format!("{at}: {} items is out of range", items.len()));
        }
        if let Some(item) = schema.get("items") {
            for (i, v) in items.iter().enumerate() {
                validate(doc, item, v, &format!("{at}[{i}]"), errors);
            }
        }
    }
    if let Some(object) = value.as_object() {
        if out_of(object.len(), "minProperties", "maxProperties") {
            errors.push(format!("{at}: {} properties is out of range", object.len()));
        }
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(key) {
                errors.push(format!("{at}: missing {key:?}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, v) in object {
            let at = format!("{at}.{key}");
            if let Some(names) = schema.get("propertyNames") {
                validate(doc, names, &Value::String(key.clone()), &at, errors);
            }
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => validate(doc, property, v, &at, errors),
                (None, Some(Value::Bool(false))) => errors.push(format!("{at}: not allowed")),
                (None, Some(extra)) => validate(doc, extra, v, &at, errors),
                (None, None) => {}
            }
        }
    }
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(doc, sub, value, at, errors);
    }
    for (key, wanted) in [("anyOf", 1..=usize::MAX), ("oneOf", 1..=1)] {
        if let Some(Value::Array(options)) = schema.get(key) {
            let mut reasons = Vec::new();
            let passed = options
                .iter()
                .filter(|option| {
                    let mut errs = Vec::new();
                    validate(doc, option, value, at, &mut errs);
                    reasons.extend(errs.iter().cloned());
                    errs.is_empty()
                })
                .count();
            if !wanted.contains(&passed) {
                errors.push(format!("{at}: {passed} of {key} match ({reasons:?})"));
            }
        }
    }
}

fn is_type(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => false,
    }
}

fn parses_as(schema: &str, text: &str) -> bool {
    match schema {
        "Name" => manifests::AppId::parse(text).is_ok(),
        "ReleaseVersion" => manifests::ReleaseVersion::parse(text).is_ok(),
        "HostRequirement" => manifests::HostRequirement::parse(text).is_ok(),
        "Digest" => manifests::Digest::parse(text).is_ok(),
        "KeyId" => manifests::KeyId::parse(text).is_ok(),
        "Timestamp" => manifests::Timestamp::parse(text).is_ok(),
        "RelPath" => manifests::RelPath::parse(text).is_ok(),
        "UrlPrefix" => manifests::UrlPrefix::parse(text).is_ok(),
        "MimeType" => manifests::MimeType::parse(text).is_ok(),
        _ => true,
    }
}

/// The examples of a media type or parameter, in document order.
fn examples<'a>(doc: &'a Value, node: &'a Value) -> Vec<(String, &'a Value)> {
    let mut out: Vec<(String, &Value)> = node
        .get("example")
        .map(|e| ("example".to_owned(), e))
        .into_iter()
        .collect();
    for (name, example) in node
        .get("examples")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        out.push((name.clone(), &resolve(doc, example)["value"]));
    }
    out
}

/// The bodies to send for an operation: one per example of a JSON body, else a zip of the
/// seeded release `1.0.0`; none without a request body.
fn request_bodies(doc: &Value, op: &Operation) -> Vec<(String, &'static str, Vec<u8>)> {
    let Some(body) = op.op.get("requestBody") else {
        return Vec::new();
    };
    let content = resolve(doc, body)["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: requestBody without content", op.name()));
    let (media, media_type) = content.iter().next().unwrap();
    match media.as_str() {
        "application/json" => {
            let bodies: Vec<_> = examples(doc, media_type)
                .into_iter()
                .map(|(name, v)| (name, "application/json", serde_json::to_vec(v).unwrap()))
                .collect();
            assert!(
                !bodies.is_empty(),
                "{}: a JSON body needs an example",
                op.name()
            );
            bodies
        }
        "application/zip" => vec![("zip".into(), "application/zip", release_zip("1.0.0"))],
        other => panic!("{}: no placeholder body for {other}", op.name()),
    }
}

/// The optional header parameters of an operation that have an example, with that example.
fn optional_headers(op: &Operation) -> Vec<(String, String)> {
    op.parameters
        .iter()
        .filter(|p| p["in"] == "header" && p["required"] != true)
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                p["example"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Sends the operation with placeholder parameters, `body` (see [`request_bodies`]) and `extra`
/// headers.
fn probe(
    s: &TestServer,
    op: &Operation,
    token: Option<&str>,
    body: Option<&(String, &'static str, Vec<u8>)>,
    extra: &[(String, String)],
) -> Response {
    let mut path = op.path.to_owned();
    let mut query = Vec::new();
    for p in &op.parameters {
        let name = p["name"].as_str().unwrap();
        match p["in"].as_str() {
            Some("path") => path = path.replace(&format!("{{{name}}}"), &placeholder(name)),
            Some("query") if p["required"] == true => {
                query.push(format!("{name}={}", placeholder(name)));
            }
            _ => {}
        }
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    if let Some((_, media, _)) = body {
        headers.push(("Content-Type", *media));
    }
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    request(
        &s.base,
        &op.method,
        &path,
        &headers,
        body.map(|(_, _, bytes)| bytes.as_slice()),
    )
}

fn error_message(r: &Response) -> Option<String> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    Some(body["error"]["message"].as_str()?.to_owned())
}

/// What is wrong with `r` as an answer to `op` according to the document.
fn check_answer(doc: &Value, op: &Operation, r: &Response) -> Vec<String> {
    let what = format!("{} answered {}", op.name(), r.status);
    if r.status == 404 && error_message(r).as_deref() == Some("route not found") {
        return vec![format!("{what} from the router's fallback: no such route")];
    }
    let responses = &op.op["responses"];
    let Some(documented) = responses
        .get(r.status.to_string())
        .or_else(|| responses.get("default"))
    else {
        return vec![format!("{what}, which is not documented: {}", r.text())];
    };
    let documented = resolve(doc, documented);
    let mut errors = Vec::new();
    for (name, header) in documented
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let header = resolve(doc, header);
        match r.header(name) {
            None if header["required"] == true => {
                errors.push(format!("{what} without the header {name}"));
            }
            None => {}
            Some(text) => {
                let value = text
                    .parse::<u64>()
                    .map_or_else(|_| Value::String(text.to_owned()), Value::from);
                validate(
                    doc,
                    &header["schema"],
                    &value,
                    &format!("{what}: {name}"),
                    &mut errors,
                );
            }
        }
    }
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        if !r.body.is_empty() {
            errors.push(format!("{what} with a body the document does not give"));
        }
        return errors;
    };
    let media = r.header("content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let Some((media, media_type)) = media.and_then(|m| content.get(&m).map(|t| (m, t))) else {
        let documented: Vec<&String> = content.keys().collect();
        errors.push(format!(
            "{what} with Content-Type {:?}, documented {documented:?}",
            r.header("content-type")
        ));
        return errors;
    };
    let body = match media.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(format!("{what} with invalid JSON ({e}): {}", r.text()));
                return errors;
            }
        },
        m if m.starts_with("text/") => Some(Value::String(r.text())),
        _ => None,
    };
    if r.status >= 400 && media == "application/json" {
        let schema = media_type["schema"]["$ref"].as_str();
        if schema != Some("#/components/schemas/Error") {
            errors.push(format!(
                "{what}: a JSON error documented with {schema:?}, not Error"
            ));
        }
        let code = body.as_ref().and_then(|b| b["error"]["code"].as_str());
        if code.is_none_or(str::is_empty) {
            errors.push(format!("{what} without an error code: {}", r.text()));
        }
    }
    if let (Some(body), Some(schema)) = (body, media_type.get("schema")) {
        validate(doc, schema, &body, &what, &mut errors);
    }
    errors
}

fn release_zip(version: &str) -> Vec<u8> {
    let mut files = build(version);
    files.push(("assets/vendor.js".into(), vendor_script()));
    zip_build(&files)
}

/// A server where `checkout` 1.0.0 is stable on `shop/production` and 1.3.2, 1.4.0 and 1.5.0
/// are published, so that placeholders and the document's examples find something; the shared
/// script has its gzip representation already (a publish makes it in the background).
fn seeded() -> TestServer {
    let s = TestServer::start();
    for (version, channel) in [
        ("1.0.0", "&channel=production"),
        ("1.3.2", ""),
        ("1.4.0", ""),
        ("1.5.0", ""),
    ] {
        let query = format!("version={version}&routes={ROUTE}{channel}");
        let r = s.publish(&s.admin, "shop", "checkout", &query, &release_zip(version));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let (package, version) = (
        manifests::PackageId::parse("checkout").unwrap(),
        manifests::ReleaseVersion::parse("1.0.0").unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(s.service.precompress(&package, &version))
        .unwrap();
    // The ingest key the document's event batch example carries.
    let example_key = server::meta_store::IngestKeyRecord {
        app: manifests::AppId::parse("shop").unwrap(),
        name: "example".into(),
        hash: manifests::Digest::of(b"bik_5f3c9a0e1d2b4c6a8e7f9a1b3c5d7e9f"),
        created_at: manifests::Timestamp::from_unix_secs(1_700_000_000),
        revoked_at: None,
    };
    let audit = server::meta_store::AuditEntry {
        at: example_key.created_at,
        actor: "test".into(),
        action: "ingest_key.create".into(),
        target: "shop/example".into(),
        detail: "{}".into(),
    };
    runtime
        .block_on(s.service.meta().insert_ingest_key(&example_key, &audit))
        .unwrap();
    s
}

#[test]
fn every_operation_has_an_id_and_responses_and_every_reference_resolves() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap_or("");
    assert!(version.starts_with("3.1."), "openapi {version:?}");
    let mut ids = BTreeSet::new();
    for op in operations(&doc) {
        let id = op.op["operationId"].as_str().unwrap_or("");
        assert!(!id.is_empty(), "{} has no operationId", op.name());
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        let responses = op.op["responses"].as_object();
        assert!(
            responses.is_some_and(|r| !r.is_empty()),
            "{} documents no response",
            op.name()
        );
        for (status, response) in responses.unwrap() {
            let response = resolve(&doc, response);
            assert!(
                response["description"].is_string(),
                "{} {status} has no description",
                op.name()
            );
        }
        let in_template: BTreeSet<&str> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let documented: BTreeSet<&str> = op
            .parameters
            .iter()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{}: {p}", op.name()))
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(in_template, documented, "{}: path parameters", op.name());
    }
    let mut refs = Vec::new();
    references(&doc, &mut refs);
    for r in refs {
        assert!(pointer(&doc, r).is_some(), "{r} does not resolve");
    }
}

/// Every node with a schema and examples (parameters, headers, media types) and every component
/// schema's `examples`.
fn examples_with_schemas<'a>(
    doc: &'a Value,
    node: &'a Value,
    at: String,
    out: &mut Vec<(String, &'a Value, &'a Value)>,
) {
    match node {
        Value::Object(map) => {
            if let Some(schema) = map.get("schema") {
                for (name, example) in examples(doc, node) {
                    out.push((format!("{at} {name}"), schema, example));
                }
            }
            for (key, child) in map {
                examples_with_schemas(doc, child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                examples_with_schemas(doc, child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_example_in_the_document_matches_its_schema() {
    let doc = document();
    let mut cases = Vec::new();
    examples_with_schemas(&doc, &doc["paths"], "paths".into(), &mut cases);
    examples_with_schemas(&doc, &doc["components"], "components".into(), &mut cases);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for (name, schema) in schemas {
        for (i, example) in schema["examples"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            cases.push((format!("schema {name} example {i}"), schema, example));
        }
    }
    assert!(cases.len() > 20, "only {} examples found", cases.len());
    let mut errors = Vec::new();
    for (at, schema, example) in cases {
        validate(&doc, schema, example, &at, &mut errors);
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_document_lists_exactly_the_routes_the_server_has() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .iter()
        .map(|op| (op.method.clone(), op.path.to_owned()))
        .collect();
    let served: BTreeSet<(String, String)> = server::http::routes()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "served but not documented: {undocumented:?}; documented but not served: {not_served:?}"
    );
}

#[test]
fn every_documented_operation_reaches_its_handler_and_answers_as_documented() {
    let doc = document();
    let s = seeded();
    let mut errors = Vec::new();
    for op in operations(&doc) {
        let bodies = request_bodies(&doc, &op);
        let r = probe(&s, &op, Some(&s.admin), bodies.first(), &[]);
        errors.extend(check_answer(&doc, &op, &r));
        for header in optional_headers(&op) {
            let r = probe(&s, &op, Some(&s.admin), bodies.first(), &[header]);
            errors.extend(check_answer(&doc, &op, &r));
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn secured_operations_answer_401_without_a_token_and_open_ones_do_not() {
    let doc = document();
    let s = seeded();
    let mut errors = Vec::new();
    for op in operations(&doc) {
        let bodies = request_bodies(&doc, &op);
        let r = probe(&s, &op, None, bodies.first(), &[]);
        errors.extend(check_answer(&doc, &op, &r));
        let secured = op.is_secured(&doc);
        if secured != (r.status == 401) {
            errors.push(format!(
                "{}: secured {secured}, but without a token it answered {}: {}",
                op.name(),
                r.status,
                r.text()
            ));
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Each example is sent in turn to one server, so some find the channel in a state they do not fit
/// (409); none may be refused as malformed (422) or answer anything undocumented.
#[test]
fn the_documented_request_examples_are_well_formed() {
    let doc = document();
    let s = seeded();
    let mut errors = Vec::new();
    for op in operations(&doc) {
        for body in request_bodies(&doc, &op) {
            let r = probe(&s, &op, Some(&s.admin), Some(&body), &[]);
            errors.extend(check_answer(&doc, &op, &r));
            if r.status == 400 || r.status == 422 {
                errors.push(format!(
                    "{} refused the example {}: {}",
                    op.name(),
                    body.0,
                    r.text()
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_server_serves_this_document_with_an_etag_and_revalidates_it() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let on_disk = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let s = TestServer::start();
    let r = s.get(manifests::paths::OPENAPI);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("public, no-cache"));
    assert!(
        r.body == on_disk,
        "the served document is not docs/openapi.json"
    );
    let tag = format!("\"{}\"", manifests::Digest::of(&on_disk));
    assert_eq!(r.header("etag"), Some(tag.as_str()));

    let again = s.get_with(manifests::paths::OPENAPI, &[("If-None-Match", &tag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    let stale = s.get_with(
        manifests::paths::OPENAPI,
        &[(
            "If-None-Match",
            "\"0000000000000000000000000000000000000000000000000000000000000000\"",
        )],
    );
    assert_eq!(stale.status, 200);
}

/// Whether the server accepts a string.
type Parser = fn(&str) -> bool;

/// The patterns of values the server parses, by JSON pointer, each with the parser a value must
/// pass. A schema-driven tester draws values from these patterns and expects them accepted.
fn request_patterns() -> Vec<(&'static str, Parser)> {
    vec![
        ("/components/schemas/Name", |t| {
            manifests::AppId::parse(t).is_ok()
                && manifests::PackageId::parse(t).is_ok()
                && manifests::Channel::parse(t).is_ok()
        }),
        ("/components/schemas/ReleaseVersion", |t| {
            manifests::ReleaseVersion::parse(t).is_ok()
        }),
        ("/components/schemas/Digest", |t| {
            manifests::Digest::parse(t).is_ok()
        }),
        ("/components/schemas/KeyId", |t| {
            manifests::KeyId::parse(t).is_ok()
        }),
        ("/components/parameters/packName/schema", |t| {
            manifests::PackName::parse_file(t).is_ok()
        }),
        (
            "/components/schemas/Origins/properties/origins/items",
            |t| manifests::check_origin(t).is_ok(),
        ),
        ("/components/schemas/TokenRequest/properties/name", |t| {
            server::auth::check_token_name(t).is_ok()
        }),
        // An ingest key's name follows a token's rule (`stats::create_ingest_key`).
        (
            "/components/schemas/IngestKeyRequest/properties/name",
            |t| server::auth::check_token_name(t).is_ok(),
        ),
        ("/components/schemas/ReleaseSignature/properties/sig", |t| {
            server::api::decode_signature(t).is_ok()
        }),
    ]
}

/// Patterns only the server writes, which no request carries.
const RESPONSE_PATTERNS: &[&str] = &[
    "/components/schemas/Timestamp",
    "/components/headers/ETag/schema",
    "/components/headers/BlobETag/schema",
    "/components/headers/DocumentETag/schema",
    "/components/headers/ManifestETag/schema",
    "/components/headers/ManifestDeltaETag/schema",
    "/components/headers/ChainETag/schema",
    "/components/schemas/Signature/properties/sig",
];

fn patterns(node: &Value, at: &str, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if map.get("pattern").is_some_and(Value::is_string) {
                out.push(at.to_owned());
            }
            for (key, child) in map {
                patterns(
                    child,
                    &format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                patterns(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_string_a_request_pattern_allows_is_one_the_server_accepts() {
    use proptest::strategy::{Strategy, ValueTree};
    let doc = document();
    let tested = request_patterns();
    let mut found = Vec::new();
    patterns(&doc, "", &mut found);
    for at in &found {
        assert!(
            tested.iter().any(|(p, _)| p == at) || RESPONSE_PATTERNS.contains(&at.as_str()),
            "{at}: a pattern no test checks against its parser; add it to request_patterns"
        );
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for (at, parses) in tested {
        let schema = doc
            .pointer(at)
            .unwrap_or_else(|| panic!("{at} is not in the document"));
        let pattern = schema["pattern"].as_str().unwrap();
        let inner = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .unwrap_or_else(|| panic!("{at}: the pattern {pattern:?} is not anchored"));
        let max = schema["maxLength"]
            .as_u64()
            .map_or(usize::MAX, |n| n as usize);
        let strategy = proptest::string::string_regex(inner).unwrap();
        for _ in 0..2_000 {
            let value = strategy.new_tree(&mut runner).unwrap().current();
            if value.chars().count() <= max {
                assert!(
                    parses(&value),
                    "{at}: {value:?} matches {pattern:?} but does not parse"
                );
            }
        }
    }
}

/// JSON Schema's `integer` is any number with no fractional part, `1000.0` included, and an
/// object without `additionalProperties` may carry any other field: the server reads request
/// bodies the same way, so that what the document allows is accepted.
#[test]
fn whole_numbers_written_with_a_fraction_are_integers_as_the_document_says() {
    let s = seeded();
    let post_events = |body: &str| {
        request(
            &s.base,
            "POST",
            manifests::paths::EVENTS,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    let r = post_events(
        r#"{"app":"shop","channel":"production","ingest_key":"bik_5f3c9a0e1d2b4c6a8e7f9a1b3c5d7e9f","device_id":"d","note":[0.5,1e300],"events":[
            {"package":"checkout","version":"1.0.0","kind":"opens","count":12.0,"offline_hits":1.2e1,"under_1s":0.0,"extra":{"x":0.25}},
            {"package":"checkout","version":"1.0.0","kind":"installed","offline_hits":0.0}]}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 2);
    let r = post_events(
        r#"{"app":"shop","channel":"production","events":[{"package":"checkout","version":"1.0.0","kind":"opens","count":1.5}]}"#,
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "schema"),
        "{}",
        r.text()
    );

    let r = s.change(
        "checkout",
        "production",
        serde_json::json!({"action": "rollout", "version": "1.5.0", "basis_points": 1000.0, "note": 0.5}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"]["rollout_basis_points"], 1000);
    for share in [1000.5, -1.0, 70000.0] {
        let r = s.change(
            "checkout",
            "production",
            serde_json::json!({"action": "rollout", "basis_points": share}),
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "bad_request"),
            "{share}: {}",
            r.text()
        );
    }
}
