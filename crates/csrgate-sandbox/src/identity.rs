//! Who is calling: the kubeconfig's admin token, then the impersonation headers kubectl `--as` sends.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use crate::status::ApiError;

/// The user the admin token in the written kubeconfig stands for.
pub const ADMIN_USER: &str = "admin";

/// An authenticated caller, as `spec.username/uid/groups/extra` of a CSR records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// UID, if any.
    pub uid: Option<String>,
    /// Groups; always includes `system:authenticated`.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The admin behind the kubeconfig token.
    pub fn admin() -> Self {
        Self {
            username: ADMIN_USER.into(),
            uid: None,
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

/// Authenticate the caller and apply impersonation. A request without `Authorization` is the admin, as on
/// the old insecure port of kube-apiserver: client-go does not send bearer tokens over plain HTTP, so
/// kubectl's requests to `http://` arrive without one.
///
/// # Errors
/// 401 Unauthorized for an unknown token; 403 when impersonation headers name groups without a user.
pub fn authenticate(headers: &HeaderMap, token: &str) -> Result<UserInfo, ApiError> {
    if let Some(presented) = headers.get("authorization") {
        let presented = presented
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if presented != Some(token) {
            return Err(ApiError::unauthorized());
        }
    }
    let Some(user) = header_values(headers, "impersonate-user").next() else {
        if headers.contains_key("impersonate-group") || headers.contains_key("impersonate-uid") {
            return Err(ApiError::new(
                403,
                "Forbidden",
                "requested [] without impersonating a user",
            ));
        }
        return Ok(UserInfo::admin());
    };
    let mut groups: Vec<String> = header_values(headers, "impersonate-group")
        .map(str::to_string)
        .collect();
    if !groups.iter().any(|g| g == "system:authenticated") && user != "system:anonymous" {
        groups.push("system:authenticated".into());
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = value.to_str()
        {
            extra
                .entry(percent_decode(key))
                .or_default()
                .push(v.to_string());
        }
    }
    Ok(UserInfo {
        username: user.to_string(),
        uid: header_values(headers, "impersonate-uid")
            .next()
            .map(str::to_string),
        groups,
        extra,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = v.parse() {
                h.append(*k, v);
            }
        }
        h
    }

    #[test]
    fn impersonated_groups_always_include_system_authenticated() {
        let h = headers(&[
            ("authorization", "Bearer t"),
            ("impersonate-user", "jane"),
            ("impersonate-group", "developers"),
        ]);
        let user = authenticate(&h, "t").ok();
        assert_eq!(user.as_ref().map(|u| u.username.as_str()), Some("jane"));
        assert_eq!(
            user.map(|u| u.groups),
            Some(vec![
                "developers".to_string(),
                "system:authenticated".to_string()
            ])
        );
    }

    #[test]
    fn a_wrong_token_is_unauthorized() {
        let h = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(authenticate(&h, "t").err().map(|e| e.code), Some(401));
    }

    #[test]
    fn extra_keys_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
