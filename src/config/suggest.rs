//! "Did you mean" suggestions for mistyped keys and enum values.

pub use crate::suggest::closest;

/// The names serde lists in "unknown field `x`, expected one of `a`, `b`".
pub(crate) fn expected_names(msg: &str) -> Vec<String> {
    let Some(idx) = msg.find("expected") else {
        return Vec::new();
    };
    msg[idx..].split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The offending name in "unknown field `x`" / "unknown variant `x`".
pub(crate) fn unknown_name(msg: &str) -> Option<(&'static str, String)> {
    for kind in ["unknown field", "unknown variant"] {
        if let Some(rest) = msg.strip_prefix(kind).or_else(|| msg.find(kind).map(|i| &msg[i + kind.len()..])) {
            let name = rest.split('`').nth(1)?;
            let what = if kind == "unknown field" { "key" } else { "value" };
            return Some((what, name.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_miss_only() {
        let keys = ["model", "data", "train", "eval", "dist", "log"];
        assert_eq!(closest("trian", keys), Some("train"));
        assert_eq!(closest("evl", keys), Some("eval"));
        assert_eq!(closest("optimizer", keys), None);
    }

    #[test]
    fn parses_serde_messages() {
        let msg = "unknown field `trian`, expected one of `model`, `data`, `train`";
        assert_eq!(unknown_name(msg), Some(("key", "trian".to_string())));
        assert_eq!(expected_names(msg), vec!["model", "data", "train"]);
        let msg = "unknown variant `sgdd`, expected `sgd` or `adam`";
        assert_eq!(unknown_name(msg), Some(("value", "sgdd".to_string())));
        assert_eq!(expected_names(msg), vec!["sgd", "adam"]);
    }
}
