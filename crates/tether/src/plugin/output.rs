//! Printing: aligned columns as kubectl prints them, `-o json|yaml`, ages and times.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::OutputFormat;

/// Prints `rows` under `header`, each column as wide as its widest cell (the last column is not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `value` as JSON or YAML, when `-o json|yaml` asked for it; `None` for the human forms.
pub fn structured(format: Option<OutputFormat>, value: &impl Serialize) -> anyhow::Result<Option<String>> {
    Ok(match format {
        Some(OutputFormat::Json) => Some(serde_json::to_string_pretty(value)? + "\n"),
        Some(OutputFormat::Yaml) => Some(serde_yaml_ng::to_string(value)?),
        Some(OutputFormat::Wide) | None => None,
    })
}

/// How long ago `then` was, as kubectl shows an age: `42s`, `7m`, `3h`, `5d`.
pub fn age(then: Timestamp) -> String {
    let seconds = Timestamp::now().duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A time the platform or the API server wrote: RFC 3339 with an offset, or without one (UTC assumed).
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>()
        .ok()
        .or_else(|| format!("{text}Z").parse().ok())
        .or_else(|| text.replace(' ', "T").parse().ok())
}

/// A `--since` value: a duration back from now (`10m`, `2h`, `90s`, `1h30m`) or an RFC 3339 time.
pub fn since(text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let duration: SignedDuration = text.parse().map_err(|_| {
        anyhow::anyhow!("--since {text:?}: give a duration such as 10m, 2h or 1h30m, or an RFC 3339 time")
    })?;
    Ok(Timestamp::now() - duration.abs())
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    one_line.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_durations_read_as_kubectl_writes_them() {
        let out = table(&["NAME", "READY"], &[vec!["a-long-name".into(), "True".into()]]);
        assert_eq!(out, "NAME          READY\na-long-name   True\n");
        let ten_minutes_ago = since("10m").unwrap();
        assert_eq!(age(ten_minutes_ago), "10m");
        assert!(since("1h30m").is_ok());
        assert!(since("yesterday").is_err());
        assert_eq!(parse_time("2026-01-01T00:00:00").unwrap(), "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
