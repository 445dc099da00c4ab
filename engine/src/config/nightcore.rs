//! Nightcore's `func_config.json`, imported as a deployment with default engine settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use gloam_core::protocol::{validate_function_name, CallId};

use super::model::{Config, ConfigError};
use super::read::{toml_key, RawEngine, RawFile, RawFunction};
use super::resolve::resolve;

impl Config {
    /// Reads Nightcore's `func_config.json` (a JSON array of `{funcName, funcId, minWorkers,
    /// maxWorkers, allowHttpGet, grpcMethods, ...}` objects). Functions get no command and the
    /// engine gets the defaults. The second value lists what was ignored (`qsAsInput`, unknown
    /// keys), one message per key.
    pub fn from_nightcore_json(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read the file: {e}")))?;
        Config::parse_nightcore_json(&text, path)
    }

    /// [`from_nightcore_json`](Self::from_nightcore_json) on text already read.
    pub fn parse_nightcore_json(
        text: &str,
        source: &Path,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            // serde_json appends the position, which the location already gives.
            let message = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&position).unwrap_or(&message);
            ConfigError::at(
                source,
                format!("line {}, column {}", e.line(), e.column()),
                format!("invalid JSON: {message}"),
            )
        })?;
        let (functions, warnings) = nightcore_functions(&value, source)?;
        let raw = RawFile {
            engine: RawEngine::default(),
            functions,
            async_calls: Default::default(),
            programs: Vec::new(),
        };
        Ok((resolve(raw, source)?, warnings))
    }
}

/// Where a Nightcore entry is: by name once known, by index before.
struct Entry<'a> {
    index: usize,
    name: Option<&'a str>,
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "functions.{}", toml_key(name)),
            None => write!(f, "[{}]", self.index),
        }
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn nightcore_functions(
    value: &serde_json::Value,
    source: &Path,
) -> Result<(BTreeMap<String, RawFunction>, Vec<String>), ConfigError> {
    let entries = value.as_array().ok_or_else(|| {
        ConfigError::new(
            source,
            None,
            format!(
                "expected a JSON array of function objects, found {}",
                json_type(value)
            ),
        )
    })?;
    let mut functions = BTreeMap::new();
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let mut at = Entry { index, name: None };
        let object = entry.as_object().ok_or_else(|| {
            ConfigError::at(
                source,
                at.to_string(),
                format!("expected an object, found {}", json_type(entry)),
            )
        })?;
        let name = match object.get("funcName") {
            Some(serde_json::Value::String(name)) => name.as_str(),
            Some(other) => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.funcName"),
                    format!("expected a string, found {}", json_type(other)),
                ))
            }
            None => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.funcName"),
                    "is missing",
                ))
            }
        };
        validate_function_name(name)
            .map_err(|reason| ConfigError::at(source, format!("{at}.funcName"), reason))?;
        if functions.contains_key(name) {
            return Err(ConfigError::at(
                source,
                format!("{at}.funcName"),
                format!("function {name} is defined twice"),
            ));
        }
        at.name = Some(name);

        let uint = |key: &str| -> Result<Option<u64>, ConfigError> {
            match object.get(key) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    ConfigError::at(
                        source,
                        format!("{at}.{key}"),
                        format!("expected a non-negative integer, found {v}"),
                    )
                }),
            }
        };
        let id = uint("funcId")?
            .ok_or_else(|| ConfigError::at(source, format!("{at}.funcId"), "is missing"))?;
        if !(1..=u64::from(CallId::MAX_FUNCTION)).contains(&id) {
            return Err(ConfigError::at(
                source,
                format!("{at}.funcId"),
                format!("{id} is out of range; ids are 1..={}", CallId::MAX_FUNCTION),
            ));
        }
        if let Some(other) = ids.insert(id, name.to_string()) {
            return Err(ConfigError::at(
                source,
                format!("{at}.funcId"),
                format!("id {id} is already used by function {other}"),
            ));
        }
        let to_u32 = |key: &str, n: u64| {
            u32::try_from(n).map_err(|_| {
                ConfigError::at(source, format!("{at}.{key}"), format!("{n} is too large"))
            })
        };
        let min_workers = uint("minWorkers")?
            .map(|n| to_u32("minWorkers", n))
            .transpose()?;
        // Nightcore treats an absent or zero maxWorkers as "unbounded": keep Gloam's default.
        let max_workers = uint("maxWorkers")?
            .filter(|&n| n > 0)
            .map(|n| to_u32("maxWorkers", n))
            .transpose()?;
        if let (Some(min), Some(max)) = (min_workers, max_workers) {
            if max < min {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.maxWorkers"),
                    format!("{max} is less than minWorkers ({min})"),
                ));
            }
        }
        let allow_get = match object.get("allowHttpGet") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.allowHttpGet"),
                    format!("expected a boolean, found {}", json_type(other)),
                ))
            }
        };
        let grpc_methods = match object.get("grpcMethods") {
            None => None,
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        serde_json::Value::String(s) => Ok(s.clone()),
                        other => Err(ConfigError::at(
                            source,
                            format!("{at}.grpcMethods[{i}]"),
                            format!("expected a string, found {}", json_type(other)),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => {
                return Err(ConfigError::at(
                    source,
                    format!("{at}.grpcMethods"),
                    format!("expected an array of strings, found {}", json_type(other)),
                ))
            }
        };
        for key in object.keys() {
            let why = match key.as_str() {
                "funcName" | "funcId" | "minWorkers" | "maxWorkers" | "allowHttpGet"
                | "grpcMethods" => continue,
                "qsAsInput" => {
                    "ignored: Gloam passes the request body as input, not the query string"
                }
                _ => "unknown key, ignored",
            };
            warnings.push(format!(
                "{}: {at}.{}: {why}",
                source.display(),
                toml_key(key)
            ));
        }
        functions.insert(
            name.to_string(),
            RawFunction {
                // Checked to be at most CallId::MAX_FUNCTION above.
                id: u32::try_from(id).ok(),
                min_workers,
                max_workers,
                allow_get,
                grpc_methods,
                ..RawFunction::default()
            },
        );
    }
    Ok((functions, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nightcore_json() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("func_config.json");
        std::fs::write(
            &path,
            r#"[
                {"funcName": "Foo", "funcId": 1, "minWorkers": 2, "maxWorkers": 8, "allowHttpGet": true, "qsAsInput": true},
                {"funcName": "grpc:shop.Cart", "funcId": 9, "grpcMethods": ["Add"], "maxWorkers": 0, "extra": 1}
            ]"#,
        )?;
        let (config, warnings) = Config::from_nightcore_json(&path)?;
        let foo = config.function("Foo").ok_or(anyhow::anyhow!("Foo"))?;
        assert_eq!((foo.id, foo.min_workers, foo.max_workers), (1, 2, 8));
        assert!(foo.allow_get);
        assert_eq!(foo.command, None);
        let cart = config
            .function("grpc:shop.Cart")
            .ok_or(anyhow::anyhow!("Cart"))?;
        assert_eq!((cart.id, cart.min_workers, cart.max_workers), (9, 1, 16));
        assert!(!cart.allow_get);
        assert_eq!(cart.grpc_methods, ["Add"]);
        assert_eq!(config.engine.log_dir, dir.path().join("logs"));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let p = path.display();
        assert!(warnings[0].starts_with(&format!("{p}: functions.Foo.qsAsInput: ignored")));
        assert!(warnings[1].starts_with(&format!(
            "{p}: functions.\"grpc:shop.Cart\".extra: unknown key"
        )));
        Ok(())
    }

    #[test]
    fn nightcore_json_errors() {
        let src = Path::new("fc.json");
        let cases = [
            (
                "{}",
                "fc.json: expected a JSON array of function objects, found an object",
            ),
            ("[1]", "fc.json: [0]: expected an object, found a number"),
            ("[{}]", "fc.json: [0].funcName: is missing"),
            (
                "[{\"funcName\": 3}]",
                "fc.json: [0].funcName: expected a string, found a number",
            ),
            (
                "[{\"funcName\": \"A\"}]",
                "fc.json: functions.A.funcId: is missing",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 5000}]",
                "fc.json: functions.A.funcId: 5000 is out of range",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1}, {\"funcName\": \"B\", \"funcId\": 1}]",
                "fc.json: functions.B.funcId: id 1 is already used by function A",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1, \"minWorkers\": 4, \"maxWorkers\": 2}]",
                "fc.json: functions.A.maxWorkers: 2 is less than minWorkers (4)",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1, \"minWorkers\": -1}]",
                "fc.json: functions.A.minWorkers: expected a non-negative integer, found -1",
            ),
            (
                "[{\"funcName\": \"grpc:S\", \"funcId\": 1, \"grpcMethods\": [1]}]",
                "fc.json: functions.\"grpc:S\".grpcMethods[0]: expected a string, found a number",
            ),
            (
                "[{\"funcName\": \"grpc:S\", \"funcId\": 1}]",
                "fc.json: functions.\"grpc:S\".grpc_methods: is missing",
            ),
            (
                "[{\"funcName\": \"A\", \"funcId\": 1, \"allowHttpGet\": 1}]",
                "fc.json: functions.A.allowHttpGet: expected a boolean",
            ),
            ("[]", "fc.json: no functions"),
            (
                "[\n{",
                "fc.json: line 2, column 1: invalid JSON: EOF while parsing an object",
            ),
        ];
        for (text, expected) in cases {
            match Config::parse_nightcore_json(text, src) {
                Ok(c) => panic!("for {text:?}: expected an error, got {c:?}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with(expected),
                        "for {text:?}:\n got {e}\nwant {expected}"
                    );
                }
            }
        }
    }
}
