//! `baleen serve --config FILE`: the server's settings in a TOML file, under the same names as
//! its flags.
//!
//! A key `name` at the top of the file, or `key` in a table `[section]`, sets the flag
//! `--section-key` if `serve` has one, else `--key` (`_` and `-` alike): `[storage] blobs = …` is
//! `--blobs`, `[gc] interval_secs = 0` is `--gc-interval-secs 0`. A flag on the command line wins
//! over its environment variable, which wins over the file, which wins over the default. An
//! array gives a repeatable flag several values; `true` turns a switch on. Any other key is an
//! error naming it, so a typo in a file is never ignored.

use std::path::Path;

/// What the file may set: one flag of `serve`.
#[derive(Clone, Debug)]
pub struct FlagSpec {
    /// The long name, without `--`.
    pub long: String,
    /// Its environment variable, if it has one.
    pub env: Option<String>,
    /// A switch (no value).
    pub switch: bool,
    /// Takes several values.
    pub repeatable: bool,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML.
    #[error("{file}: not a TOML file: {reason}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message, with the line.
        reason: String,
    },
    /// A key no flag answers to.
    #[error("{file}: unknown setting {key:?}; the settings are the flags of `baleen serve --help`")]
    Unknown {
        /// The file.
        file: String,
        /// The key, as `section.key`.
        key: String,
    },
    /// A value of a kind the flag cannot take.
    #[error("{file}: setting {key:?}: {reason}")]
    Value {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// The `serve` arguments the file `text` (read from `file`) sets, leaving out those whose
/// environment variable `env_set` says is set: they go before the command line's own, which
/// override them.
///
/// # Errors
/// [`ConfigError`] naming the file and the key at fault.
pub fn serve_args(
    text: &str,
    file: &Path,
    flags: &[FlagSpec],
    env_set: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, ConfigError> {
    let name = file.display().to_string();
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            file: name.clone(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
    let mut settings = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(section) => {
                for (inner, value) in section {
                    settings.push((Some(key.clone()), inner, value));
                }
            }
            value => settings.push((None, key, value)),
        }
    }
    let mut args = Vec::new();
    for (section, key, value) in settings {
        let shown = match &section {
            Some(s) => format!("{s}.{key}"),
            None => key.clone(),
        };
        let normal = |s: &str| s.replace('_', "-");
        let candidates = section
            .iter()
            .map(|s| format!("{}-{}", normal(s), normal(&key)))
            .chain([normal(&key)]);
        let Some(flag) = candidates
            .filter_map(|c| flags.iter().find(|f| f.long == c))
            .next()
        else {
            return Err(ConfigError::Unknown {
                file: name.clone(),
                key: shown,
            });
        };
        if flag.env.as_deref().is_some_and(env_set) {
            continue;
        }
        let bad = |reason: &str| ConfigError::Value {
            file: name.clone(),
            key: shown.clone(),
            reason: reason.to_owned(),
        };
        let values = match value {
            toml::Value::Array(items) if flag.repeatable => items,
            toml::Value::Array(_) => return Err(bad("takes one value, not a list")),
            toml::Value::Table(_) => return Err(bad("tables nest one level only")),
            one => vec![one],
        };
        for value in values {
            let text = match value {
                toml::Value::Boolean(on) if flag.switch => {
                    if on {
                        args.push(format!("--{}", flag.long));
                    }
                    continue;
                }
                _ if flag.switch => return Err(bad("is a switch: true or false")),
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(bad("expected a string, a number or a list of them")),
            };
            args.push(format!("--{}", flag.long));
            args.push(text);
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<FlagSpec> {
        let flag = |long: &str, env: Option<&str>, switch, repeatable| FlagSpec {
            long: long.into(),
            env: env.map(Into::into),
            switch,
            repeatable,
        };
        vec![
            flag("listen", Some("BALEEN_LISTEN"), false, false),
            flag(
                "gc-interval-secs",
                Some("BALEEN_GC_INTERVAL_SECS"),
                false,
                false,
            ),
            flag("blobs", Some("BALEEN_BLOBS"), false, false),
            flag("extra-key", None, false, true),
            flag("demo", Some("BALEEN_DEMO"), true, false),
        ]
    }

    fn args(text: &str, env: &[&str]) -> Result<Vec<String>, ConfigError> {
        serve_args(text, Path::new("scaled.toml"), &flags(), &|v| {
            env.contains(&v)
        })
    }

    #[test]
    fn keys_and_sections_become_flags() {
        let got = args(
            "listen = \"0.0.0.0:80\"\ndemo = true\nextra_key = [\"a\", \"b\"]\n\
             [gc]\ninterval_secs = 0\n[storage]\nblobs = \"s3://bundles\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "--demo",
                "--extra-key",
                "a",
                "--extra-key",
                "b",
                "--gc-interval-secs",
                "0",
                "--listen",
                "0.0.0.0:80",
                "--blobs",
                "s3://bundles"
            ]
        );
        // An environment variable wins over the file.
        let got = args(
            "listen = \"0.0.0.0:80\"\n[gc]\ninterval_secs = 0\n",
            &["BALEEN_LISTEN"],
        );
        assert_eq!(got.unwrap(), ["--gc-interval-secs", "0"]);
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let err = |text: &str| args(text, &[]).unwrap_err().to_string();
        assert_eq!(
            err("[gc]\nintervall_secs = 1\n"),
            "scaled.toml: unknown setting \"gc.intervall_secs\"; the settings are the flags of \
             `baleen serve --help`"
        );
        assert!(err("listen = [\"a\"]").contains("\"listen\": takes one value, not a list"));
        assert!(err("demo = \"yes\"").contains("\"demo\": is a switch"));
        assert!(err("[a]\n[a.b]\nc = 1").contains("unknown setting \"a.b\""));
        let syntax = err("listen = ");
        assert!(
            syntax.starts_with("scaled.toml: not a TOML file:"),
            "{syntax}"
        );
        assert!(syntax.contains("line 1"), "{syntax}");
    }
}
