//! The JSON contract (`--json`), schema version [`SCHEMA`]: stdout carries only NDJSON, every
//! line is an object with a string `event`, and every run ends with exactly one `summary` event.
//!
//! Commands never print JSON themselves. They hand this module events ([`event`]), the fields
//! of their result ([`result`]) and, when they fail, the error ([`error`]); `main` calls
//! [`finish`] once with the exit code, which prints the summary. So a command that fails before
//! anything ran, a usage error clap reports, and a deploy that rolled back all end the same way:
//! `{"event":"summary","schema":1,"command":…,"ok":…,"exit_code":…,…,"error":{kind,message,help}}`.
//!
//! Every line goes through the process's scrubber (see [`crate::platforms`]) just before it is
//! written. The schema is documented in docs/cli.md and checked line by line by
//! `crates/cli/tests/json_contract.rs`.

use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::exit::Exit;

/// The version of the JSON output schema, in every summary as `schema`.
pub const SCHEMA: u64 = 1;

struct State {
    json: bool,
    command: String,
    fields: Vec<(String, Value)>,
    error: Option<(Option<String>, String, Option<String>)>,
    finished: bool,
}

static STATE: Mutex<State> =
    Mutex::new(State { json: false, command: String::new(), fields: Vec::new(), error: None, finished: false });

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the run of `command` (e.g. `deploy`, `secrets sync`); `json` is whether `--json` is on.
pub fn start(json: bool, command: &str) {
    let mut s = state();
    s.json = json;
    s.command = command.to_string();
}

/// Whether `--json` is on.
pub fn json() -> bool {
    state().json
}

/// Writes one JSON object as a line on stdout, scrubbed. Only this module writes JSON.
fn line(mut value: Value) {
    crate::platforms::scrub_json(&mut value);
    println!("{value}");
}

/// Prints an event line in `--json` mode: `fields` (an object) with `event` set to `name`.
pub fn event(name: &str, fields: Value) {
    if !json() {
        return;
    }
    let mut obj = match fields {
        Value::Object(m) => m,
        other => Map::from_iter([("value".to_string(), other)]),
    };
    obj.insert("event".to_string(), Value::String(name.to_string()));
    line(Value::Object(obj));
}

/// Adds the fields of `fields` (an object) to the command's result in its summary.
pub fn result(fields: Value) {
    if let Value::Object(m) = fields {
        let mut s = state();
        for (k, v) in m {
            s.fields.retain(|(have, _)| *have != k);
            s.fields.push((k, v));
        }
    }
}

/// Records why the command failed (the first error recorded is the one reported). `kind` is
/// one of core's error kinds (`unauthorized`, `conflict`…), or `None` to take it from the exit
/// code.
pub fn error(kind: Option<&str>, message: &str, help: Option<&str>) {
    let mut s = state();
    match &mut s.error {
        Some((k, _, _)) if k.is_none() && kind.is_some() => *k = kind.map(str::to_string),
        Some(_) => {}
        None => s.error = Some((kind.map(str::to_string), message.to_string(), help.map(str::to_string))),
    }
}

/// The error kind an exit code stands for, when nothing more precise was recorded.
fn kind_of(exit: Exit) -> &'static str {
    match exit {
        Exit::Ok => "none",
        Exit::Failed => "failed",
        Exit::Changes => "changes",
        Exit::TimedOut => "timeout",
        Exit::BadInput => "bad_input",
        Exit::Auth => "unauthorized",
        Exit::Conflict => "conflict",
        Exit::NotRestored => "not_restored",
        Exit::Cancelled => "cancelled",
    }
}

fn message_of(exit: Exit) -> &'static str {
    match exit {
        Exit::Ok => "",
        Exit::Changes => "there are differences",
        Exit::Cancelled => "stopped by a signal",
        _ => "the command failed",
    }
}

/// The summary line of this run.
fn summary(s: &State, exit: Exit) -> Value {
    let mut obj = Map::new();
    obj.insert("event".into(), "summary".into());
    obj.insert("schema".into(), SCHEMA.into());
    obj.insert("command".into(), if s.command.is_empty() { Value::Null } else { s.command.clone().into() });
    obj.insert("ok".into(), (exit == Exit::Ok).into());
    obj.insert("exit_code".into(), exit.code().into());
    for (k, v) in &s.fields {
        if !matches!(k.as_str(), "event" | "schema" | "command" | "ok" | "exit_code" | "error" | "ts") {
            obj.insert(k.clone(), v.clone());
        }
    }
    let error = if exit == Exit::Ok {
        Value::Null
    } else {
        let (kind, message, help) = s.error.clone().unwrap_or((None, message_of(exit).to_string(), None));
        serde_json::json!({
            "kind": kind.unwrap_or_else(|| kind_of(exit).to_string()),
            "message": message,
            "help": help,
        })
    };
    obj.insert("error".into(), error);
    obj.insert("ts".into(), jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into());
    Value::Object(obj)
}

/// Ends the run: in `--json` mode, prints the one summary event (once, however often it is
/// called).
pub fn finish(exit: Exit) {
    let value = {
        let mut s = state();
        if s.finished || !s.json {
            s.finished = true;
            return;
        }
        s.finished = true;
        summary(&s, exit)
    };
    line(value);
}

/// Whether the raw arguments ask for `--json` (for errors found before the flags are parsed).
pub fn json_in_args() -> bool {
    std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json")
}

/// The subcommand the raw arguments name, as far as it can be told without parsing them.
pub fn command_in_args(cmd: &clap::Command) -> String {
    let mut names = Vec::new();
    let mut at = cmd.clone();
    for arg in std::env::args().skip(1).take_while(|a| a != "--") {
        if arg.starts_with('-') {
            continue;
        }
        match at.find_subcommand(&arg) {
            Some(sub) => {
                names.push(sub.get_name().to_string());
                at = sub.clone();
            }
            // A flag's value before the command (`-f x.toml deploy`), or an argument after it.
            None if names.is_empty() => {}
            None => break,
        }
    }
    names.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> State {
        State { json: true, command: "deploy".into(), fields: Vec::new(), error: None, finished: false }
    }

    #[test]
    fn a_failure_has_an_error_with_kind_message_and_help() {
        let mut s = fresh();
        s.error = Some((None, "no token".into(), Some("run shipit login fly".into())));
        let v = summary(&s, Exit::Auth);
        assert_eq!(v["event"], "summary");
        assert_eq!(v["ok"], false);
        assert_eq!(v["exit_code"], 5);
        assert_eq!(v["error"]["kind"], "unauthorized");
        assert_eq!(v["error"]["message"], "no token");
        assert_eq!(v["error"]["help"], "run shipit login fly");
    }

    #[test]
    fn success_has_a_null_error_and_keeps_the_result() {
        let mut s = fresh();
        s.fields.push(("outcome".into(), "succeeded".into()));
        s.fields.push(("ok".into(), "forged".into()));
        let v = summary(&s, Exit::Ok);
        assert_eq!(v["ok"], true, "a result cannot override the common fields");
        assert_eq!(v["outcome"], "succeeded");
        assert!(v["error"].is_null());
        assert_eq!(v["schema"], SCHEMA);
    }

    #[test]
    fn a_failure_with_no_message_still_says_what_it_was() {
        let v = summary(&fresh(), Exit::Conflict);
        assert_eq!(v["error"]["kind"], "conflict");
        assert!(!v["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
}
