//! The shape of a diagnosis.

use std::time::Instant;

use serde::Serialize;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = StepStatus)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Failed,
    Skipped,
}

/// One step of a diagnosis.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub duration_ms: u64,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The diagnosis of one account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    pub account: String,
    pub protocol: String,
    pub host: String,
    pub port: u16,
    /// True when no step failed.
    pub ok: bool,
    pub duration_ms: u64,
    pub steps: Vec<Step>,
}

impl CheckReport {
    pub(crate) fn new(account: &mailgate_core::model::Account) -> CheckReport {
        CheckReport {
            account: account.name.clone(),
            protocol: account.protocol.to_string(),
            host: account.host.clone(),
            port: account.port,
            ok: true,
            duration_ms: 0,
            steps: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, step: Step) {
        if step.status == Status::Failed {
            self.ok = false;
        }
        self.steps.push(step);
    }

    /// The first failed step, if any.
    pub fn failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.status == Status::Failed)
    }

    /// A report for people: one line per step, causes and fixes indented.
    pub fn to_text(&self) -> String {
        let mut out = format!("{} account '{}' ({}:{})\n", self.protocol.to_uppercase(), self.account, self.host, self.port);
        for s in &self.steps {
            let mark = match s.status {
                Status::Ok => "ok  ",
                Status::Warning => "WARN",
                Status::Failed => "FAIL",
                Status::Skipped => "skip",
            };
            out.push_str(&format!("  [{mark}] {:<10} {:>5} ms  {}\n", s.name, s.duration_ms, s.detail));
            if let Some(c) = &s.cause {
                out.push_str(&format!("                likely cause: {c}\n"));
            }
            if let Some(f) = &s.fix {
                out.push_str(&format!("                fix: {f}\n"));
            }
        }
        out.push_str(if self.ok { "result: all checks passed\n" } else { "result: FAILED\n" });
        out
    }
}

/// Times a step.
pub(crate) struct Timer(Instant);

impl Timer {
    pub fn start() -> Timer {
        Timer(Instant::now())
    }

    pub fn step(&self, name: &'static str, status: Status, detail: impl Into<String>) -> Step {
        Step { name, status, duration_ms: self.0.elapsed().as_millis() as u64, detail: detail.into(), cause: None, fix: None }
    }

    pub fn failed(&self, name: &'static str, detail: impl Into<String>, cause: impl Into<String>, fix: impl Into<String>) -> Step {
        Step { cause: Some(cause.into()), fix: Some(fix.into()), ..self.step(name, Status::Failed, detail) }
    }
}
