//! SubjectAccessReview answers from configured rules (the sandbox has no RBAC).

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One authorization rule; the first rule matching a review decides it. `None` fields match anything;
/// `name` may end in `*` to match a prefix (`example.com/*`). A subject in `system:masters` is always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SarRule {
    /// Allow (true) or deny (false) when the rule matches.
    pub allow: bool,
    /// The reviewed user.
    #[serde(default)]
    pub user: Option<String>,
    /// A group the reviewed subject must be in.
    #[serde(default)]
    pub group: Option<String>,
    /// The verb (`approve`, `create`, ...).
    #[serde(default)]
    pub verb: Option<String>,
    /// The API group of the resource (`certificates.k8s.io`).
    #[serde(default)]
    pub api_group: Option<String>,
    /// The resource, with `/subresource` when one is reviewed (`signers`, `certificatesigningrequests/approval`).
    #[serde(default)]
    pub resource: Option<String>,
    /// The object name (`kubernetes.io/kubelet-serving`, `example.com/*`).
    #[serde(default)]
    pub name: Option<String>,
}

/// Why a rule string did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SarRuleParseError {
    /// It did not start with `allow` or `deny`.
    #[error("a rule starts with allow or deny, found {0:?}")]
    MissingEffect(String),
    /// A `key=value` item had an unknown key or no `=`.
    #[error("unknown rule item {0:?} (expected user=, group=, verb=, apiGroup=, resource=, name=)")]
    UnknownItem(String),
}

impl FromStr for SarRule {
    type Err = SarRuleParseError;

    /// `allow,user=jane,verb=approve,resource=signers,name=example.com/*` (commas or spaces between items).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut items = s.split([',', ' ']).filter(|i| !i.is_empty());
        let allow = match items.next() {
            Some("allow") => true,
            Some("deny") => false,
            other => {
                return Err(SarRuleParseError::MissingEffect(
                    other.unwrap_or_default().to_string(),
                ));
            }
        };
        let mut rule = SarRule {
            allow,
            ..SarRule::default()
        };
        for item in items {
            let Some((k, v)) = item.split_once('=') else {
                return Err(SarRuleParseError::UnknownItem(item.to_string()));
            };
            let slot = match k {
                "user" => &mut rule.user,
                "group" => &mut rule.group,
                "verb" => &mut rule.verb,
                "apiGroup" => &mut rule.api_group,
                "resource" => &mut rule.resource,
                "name" => &mut rule.name,
                _ => return Err(SarRuleParseError::UnknownItem(item.to_string())),
            };
            *slot = Some(v.to_string());
        }
        Ok(rule)
    }
}

impl SarRule {
    /// Parse a rules file: one rule per line in the [`FromStr`] form; blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// The first line that does not parse.
    pub fn parse_list(text: &str) -> Result<Vec<SarRule>, SarRuleParseError> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::parse)
            .collect()
    }
}

fn matches(pattern: Option<&String>, value: &str) -> bool {
    match pattern {
        None => true,
        Some(p) if p == "*" => true,
        Some(p) => p
            .strip_suffix('*')
            .map_or(p == value, |prefix| value.starts_with(prefix)),
    }
}

/// Fill in `status` of a SubjectAccessReview body from the rules.
pub fn review(mut body: Value, rules: &[SarRule]) -> Value {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let text = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let user = text("/user");
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let resource = match text("/resourceAttributes/subresource").as_str() {
        "" => text("/resourceAttributes/resource"),
        sub => format!("{}/{sub}", text("/resourceAttributes/resource")),
    };
    let verb = text("/resourceAttributes/verb");
    let group = text("/resourceAttributes/group");
    let name = text("/resourceAttributes/name");
    let status = if groups.iter().any(|g| g == "system:masters") {
        json!({"allowed": true, "reason": "system:masters is a super-user group"})
    } else {
        let hit = rules.iter().find(|r| {
            matches(r.user.as_ref(), &user)
                && r.group
                    .as_ref()
                    .is_none_or(|g| groups.contains(g) || g == "system:authenticated")
                && matches(r.verb.as_ref(), &verb)
                && matches(r.api_group.as_ref(), &group)
                && matches(r.resource.as_ref(), &resource)
                && matches(r.name.as_ref(), &name)
        });
        match hit {
            Some(r) if r.allow => json!({"allowed": true, "reason": "allowed by a sandbox rule"}),
            Some(_) => {
                json!({"allowed": false, "denied": true, "reason": "denied by a sandbox rule"})
            }
            None => json!({"allowed": false, "reason": "no sandbox rule allows this"}),
        }
    };
    body["status"] = status;
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sar(user: &str, verb: &str, name: &str) -> Value {
        json!({"spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes":
            {"group": "certificates.k8s.io", "resource": "signers", "verb": verb, "name": name}}})
    }

    #[test]
    fn the_first_matching_rule_decides_and_names_may_be_prefixes() {
        let rules: Vec<SarRule> = [
            "deny user=mallory",
            "allow verb=approve resource=signers name=example.com/*",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            review(sar("jane", "approve", "example.com/x"), &rules)["status"]["allowed"],
            true
        );
        assert_eq!(
            review(sar("mallory", "approve", "example.com/x"), &rules)["status"]["denied"],
            true
        );
        assert_eq!(
            review(sar("jane", "approve", "other.com/x"), &rules)["status"]["allowed"],
            false
        );
    }

    #[test]
    fn a_rules_file_skips_comments_and_blank_lines() {
        let rules =
            SarRule::parse_list("# who may approve\n\nallow,user=jane\ndeny group=interns\n");
        assert_eq!(rules.map(|r| r.len()), Ok(2));
    }

    #[test]
    fn a_rule_without_an_effect_does_not_parse() {
        assert!(matches!(
            "user=jane".parse::<SarRule>(),
            Err(SarRuleParseError::MissingEffect(_))
        ));
    }
}
