//! In-process counters and histograms, rendered in Prometheus' text format by `/metrics`.
//! Label values are names an admin chose (accounts, routes), never addresses or subjects.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

/// What a metric is, for its HELP and TYPE lines.
pub struct MetricInfo {
    pub name: &'static str,
    pub help: &'static str,
    pub histogram: bool,
}

pub const MAILS_SUBMITTED: &str = "mailgate_mails_submitted_total";
pub const MAILS_SENT: &str = "mailgate_mails_sent_total";
pub const MAILS_FAILED: &str = "mailgate_mails_failed_total";
pub const MAILS_RETRIED: &str = "mailgate_mails_retried_total";
pub const SEND_LATENCY: &str = "mailgate_send_latency_seconds";
pub const SMTP_SESSIONS: &str = "mailgate_smtp_sessions_total";
pub const SMTP_ERRORS: &str = "mailgate_smtp_errors_total";
pub const MESSAGES_RETRIEVED: &str = "mailgate_messages_retrieved_total";
pub const BYTES_RETRIEVED: &str = "mailgate_retrieved_bytes_total";
pub const HTTP_REQUESTS: &str = "mailgate_http_requests_total";

pub const METRICS: &[MetricInfo] = &[
    MetricInfo { name: MAILS_SUBMITTED, help: "Mails accepted into the spool, by account.", histogram: false },
    MetricInfo { name: MAILS_SENT, help: "Mails the server accepted, by account.", histogram: false },
    MetricInfo { name: MAILS_FAILED, help: "Mails that failed for good, by account.", histogram: false },
    MetricInfo { name: MAILS_RETRIED, help: "Temporary failures that will be retried, by account.", histogram: false },
    MetricInfo { name: SEND_LATENCY, help: "Seconds from submission until the server accepted the mail.", histogram: true },
    MetricInfo { name: SMTP_SESSIONS, help: "SMTP sessions opened, by account.", histogram: false },
    MetricInfo { name: SMTP_ERRORS, help: "Failed attempts by account and class (temporary, permanent).", histogram: false },
    MetricInfo { name: MESSAGES_RETRIEVED, help: "Messages stored from IMAP, by account.", histogram: false },
    MetricInfo { name: BYTES_RETRIEVED, help: "Bytes of messages stored from IMAP, by account.", histogram: false },
    MetricInfo { name: HTTP_REQUESTS, help: "HTTP requests by route, method and status.", histogram: false },
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The registry of one process.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn render_labels(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()).entry((name, labels(pairs))).or_default() += by;
    }

    pub fn inc(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        self.add(name, pairs, 1);
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let h = histograms.entry((name, labels(pairs))).or_default();
        if h.buckets.is_empty() {
            h.buckets = vec![0; BUCKETS.len()];
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Appends every metric in the text exposition format.
    pub fn render(&self, out: &mut String) {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        for info in METRICS {
            let kind = if info.histogram { "histogram" } else { "counter" };
            let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {kind}", info.name, info.help, info.name);
            if info.histogram {
                for ((_, l), h) in histograms.iter().filter(|((n, _), _)| *n == info.name) {
                    for (bound, count) in BUCKETS.iter().zip(&h.buckets) {
                        let _ = writeln!(out, "{}_bucket{} {count}", info.name, render_labels(l, Some(("le", bound.to_string()))));
                    }
                    let _ = writeln!(out, "{}_bucket{} {}", info.name, render_labels(l, Some(("le", "+Inf".into()))), h.count);
                    let _ = writeln!(out, "{}_sum{} {}", info.name, render_labels(l, None), h.sum);
                    let _ = writeln!(out, "{}_count{} {}", info.name, render_labels(l, None), h.count);
                }
            } else {
                for ((_, l), v) in counters.iter().filter(|((n, _), _)| *n == info.name) {
                    let _ = writeln!(out, "{}{} {v}", info.name, render_labels(l, None));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.inc(MAILS_SENT, &[("account", "billing \"eu\"")]);
        m.add(MAILS_SENT, &[("account", "billing \"eu\"")], 2);
        m.observe(SEND_LATENCY, &[], 0.02);
        m.observe(SEND_LATENCY, &[], 3.0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("mailgate_mails_sent_total{account=\"billing \\\"eu\\\"\"} 3"), "{out}");
        assert!(out.contains("mailgate_send_latency_seconds_bucket{le=\"0.025\"} 1"), "{out}");
        assert!(out.contains("mailgate_send_latency_seconds_bucket{le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains("mailgate_send_latency_seconds_count 2"), "{out}");
    }
}
