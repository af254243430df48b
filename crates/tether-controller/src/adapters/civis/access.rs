//! Who may use a Civis service, kept as declared: shares with users and groups, project membership, and
//! tokens. Each is managed only when the spec sets it. A token's secret is shown once, at creation, so it
//! goes straight to the outputs Secret (`token-<name>`); a token whose secret is missing there is revoked
//! and minted again rather than left unusable.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use tether_api::CivisService;
use tether_api::civis::{PermissionLevel, Shares};
use tether_platforms::Error as PlatformError;
use tether_platforms::civis::Client;

use crate::adapter::Request;

/// A principal: `(is a group, id)`.
type Principal = (bool, i64);

/// The outputs Secret key of a token's secret.
pub fn token_key(name: &str) -> String {
    format!("token-{name}")
}

fn level_name(level: PermissionLevel) -> &'static str {
    match level {
        PermissionLevel::Read => "read",
        PermissionLevel::Write => "write",
        PermissionLevel::Manage => "manage",
    }
}

fn declared_shares(shares: &Shares) -> BTreeMap<Principal, &'static str> {
    let users = shares.users.iter().map(|s| ((false, s.id), level_name(s.permission_level)));
    let groups = shares.groups.iter().map(|s| ((true, s.id), level_name(s.permission_level)));
    users.chain(groups).collect()
}

/// The platform's ShareIndex as principal → level, without the service's creator (always an owner).
fn current_shares(index: &Map<String, Value>, creator: Option<i64>) -> BTreeMap<Principal, &'static str> {
    let mut out = BTreeMap::new();
    for (section, level) in [("readers", "read"), ("writers", "write"), ("owners", "manage")] {
        for (group, key) in [(false, "users"), (true, "groups")] {
            let items = index.get(section).and_then(|s| s.get(key)).and_then(Value::as_array);
            for id in items.into_iter().flatten().filter_map(|i| i.get("id")?.as_i64()) {
                if group || Some(id) != creator {
                    out.insert((group, id), level);
                }
            }
        }
    }
    out
}

/// What must change for access to match the spec; empty when it does.
#[derive(Debug, Default)]
pub struct AccessPlan {
    share: BTreeMap<(bool, &'static str), Vec<i64>>,
    unshare: Vec<Principal>,
    join: Vec<i64>,
    leave: Vec<i64>,
    mint: Vec<tether_api::civis::TokenSpec>,
    revoke: Vec<i64>,
    /// Token name → id of the tokens Tether keeps (declared, or declared before and not yet revoked).
    pub token_ids: BTreeMap<String, i64>,
    /// What the plan read, and a digest of the answers, for a drift check to read again ([`Reads::read`]).
    pub reads: Reads,
}

/// Which of shares, projects and tokens a plan read, and a digest of what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    shares: bool,
    projects: bool,
    tokens: bool,
    /// The digest of the answers (as [`Reads::read`] makes it).
    pub digest: u64,
}

impl Reads {
    /// Which of shares, projects and tokens `cr` needs read.
    fn of(cr: &Request<'_, CivisService>) -> Self {
        let recorded = cr.status.as_ref().and_then(|s| s.at_provider.as_ref()?.token_ids.as_ref());
        Self {
            shares: cr.spec.shares.is_some(),
            projects: cr.spec.projects.is_some(),
            tokens: !cr.spec.tokens.is_empty() || recorded.is_some_and(|t| !t.is_empty()),
            digest: 0,
        }
    }

    /// Reads the same of service `id` again; the answers, and these reads with their digest.
    pub async fn read(self, client: &Client, id: i64) -> Result<(Answers, Self), PlatformError> {
        let shares = if self.shares { Some(client.shares(id).await?) } else { None };
        let projects = if self.projects { Some(client.projects(id).await?) } else { None };
        let tokens = if self.tokens { Some(client.tokens(id).await?) } else { None };
        let answers = (shares, projects, tokens);
        let digest = tether_platforms::listing::digest(&answers);
        Ok((answers, Self { digest, ..self }))
    }
}

/// What [`Reads::read`] read: the share index, the project ids, the tokens.
pub type Answers = (Option<Map<String, Value>>, Option<Vec<i64>>, Option<Vec<tether_platforms::civis::Token>>);

impl AccessPlan {
    /// Whether access already matches.
    pub fn is_empty(&self) -> bool {
        self.share.is_empty()
            && self.unshare.is_empty()
            && self.join.is_empty()
            && self.leave.is_empty()
            && self.mint.is_empty()
            && self.revoke.is_empty()
    }
}

/// Reads shares, projects and tokens (only those the spec manages) and plans the changes.
pub async fn plan(
    client: &Client,
    id: i64,
    creator: Option<i64>,
    cr: &Request<'_, CivisService>,
) -> Result<AccessPlan, PlatformError> {
    let spec = &cr.spec;
    let ((shares_read, projects_read, tokens_read), reads) = Reads::of(cr).read(client, id).await?;
    let mut plan = AccessPlan { reads, ..Default::default() };
    if let (Some(shares), Some(index)) = (&spec.shares, &shares_read) {
        let want = declared_shares(shares);
        let have = current_shares(index, creator);
        for (principal, level) in &want {
            if have.get(principal) != Some(level) {
                plan.share.entry((principal.0, *level)).or_default().push(principal.1);
            }
        }
        plan.unshare = have.keys().filter(|p| !want.contains_key(p)).copied().collect();
    }
    if let (Some(projects), Some(current)) = (&spec.projects, projects_read) {
        let want: BTreeSet<i64> = projects.iter().copied().collect();
        let have: BTreeSet<i64> = current.into_iter().collect();
        plan.join = want.difference(&have).copied().collect();
        plan.leave = have.difference(&want).copied().collect();
    }
    let recorded = cr.status.as_ref().and_then(|s| s.at_provider.as_ref()?.token_ids.clone()).unwrap_or_default();
    if let Some(tokens) = tokens_read {
        let live: BTreeMap<String, i64> = tokens.into_iter().map(|t| (t.name, t.id)).collect();
        for token in &spec.tokens {
            match live.get(&token.name) {
                Some(&token_id) if cr.outputs.contains_key(&token_key(&token.name)) => {
                    plan.token_ids.insert(token.name.clone(), token_id);
                }
                Some(&token_id) => {
                    // Minted, but its secret never reached the Secret: it can never be read again.
                    plan.revoke.push(token_id);
                    plan.mint.push(token.clone());
                }
                None => plan.mint.push(token.clone()),
            }
        }
        for (name, token_id) in &recorded {
            let declared = spec.tokens.iter().any(|t| &t.name == name);
            if !declared && live.get(name) == Some(token_id) {
                plan.revoke.push(*token_id);
                plan.token_ids.insert(name.clone(), *token_id);
            }
        }
    }
    Ok(plan)
}

/// Carries out a plan; minted tokens' secrets are published to the outputs Secret.
pub async fn apply(
    client: &Client,
    id: i64,
    plan: AccessPlan,
    cr: &Request<'_, CivisService>,
) -> Result<(), PlatformError> {
    for ((groups, level), ids) in &plan.share {
        client.share(id, *groups, ids, level).await?;
    }
    for (groups, principal) in &plan.unshare {
        client.unshare(id, *groups, *principal).await?;
    }
    for project in &plan.join {
        client.set_project(id, *project, true).await?;
    }
    for project in &plan.leave {
        client.set_project(id, *project, false).await?;
    }
    for token_id in &plan.revoke {
        match client.delete_token(id, *token_id).await {
            Ok(()) | Err(PlatformError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for token in &plan.mint {
        let minted = client.create_token(id, &token.name, token.machine_token, token.expires_in).await?;
        let secret = minted
            .token
            .ok_or_else(|| PlatformError::Decode(format!("token {} came without its secret", token.name)))?;
        cr.publish(token_key(&token.name), secret);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_share_index_reads_as_principals_without_the_creator() {
        let index = json!({
            "readers": {"users": [{"id": 5}], "groups": [{"id": 9}]},
            "writers": {"users": [], "groups": []},
            "owners": {"users": [{"id": 1}, {"id": 7}], "groups": []},
        });
        let shares = current_shares(index.as_object().unwrap(), Some(1));
        assert_eq!(shares, BTreeMap::from([((false, 5), "read"), ((true, 9), "read"), ((false, 7), "manage")]));
    }
}
