//! The Swagger 2.0 document `GET /endpoints` serves: the Civis SDK builds `client.services.*` from it at
//! start-up. Generated from a table of the services operations (shared/platforms/civis.md §3), with inline
//! schemas, so the simulator and its spec cannot disagree about what exists.

use serde::Serialize;
use serde_json::{Value, json};

/// A parameter: name, where (`path`/`query`), JSON type, required.
type Param = (&'static str, &'static str, &'static str, bool);
/// A body property: camelCase name, JSON type, required.
type Prop = (&'static str, &'static str, bool);

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    params: &'static [Param],
    body: &'static [Prop],
    status: &'static str,
}

const LIST_QUERY: &[Param] = &[
    ("hidden", "query", "boolean", false),
    ("archived", "query", "string", false),
    ("author", "query", "string", false),
    ("status", "query", "string", false),
    ("limit", "query", "integer", false),
    ("page_num", "query", "integer", false),
    ("order", "query", "string", false),
    ("order_dir", "query", "string", false),
];
const ID: &[Param] = &[("id", "path", "integer", true)];
const SERVICE_ID: &[Param] = &[("service_id", "path", "integer", true)];
const SERVICE_AND_DEPLOYMENT: &[Param] =
    &[("service_id", "path", "integer", true), ("deployment_id", "path", "integer", true)];
const SERVICE_FIELDS: &[Prop] = &[
    ("name", "string", false),
    ("description", "string", false),
    ("dockerImageName", "string", false),
    ("dockerImageTag", "string", false),
    ("schedule", "object", false),
    ("replicas", "integer", false),
    ("maxReplicas", "integer", false),
    ("instanceType", "string", false),
    ("memory", "integer", false),
    ("cpu", "integer", false),
    ("credentials", "array", false),
    ("permissionSetId", "integer", false),
    ("gitRepoUrl", "string", false),
    ("gitRepoRef", "string", false),
    ("gitPathDir", "string", false),
    ("environmentVariables", "object", false),
    ("notifications", "object", false),
    ("partitionLabel", "string", false),
];
const CREATE_FIELDS: &[Prop] = &[
    ("name", "string", false),
    ("description", "string", false),
    ("type", "string", false),
    ("dockerImageName", "string", false),
    ("dockerImageTag", "string", false),
    ("schedule", "object", false),
    ("replicas", "integer", false),
    ("maxReplicas", "integer", false),
    ("instanceType", "string", false),
    ("memory", "integer", false),
    ("cpu", "integer", false),
    ("credentials", "array", false),
    ("permissionSetId", "integer", false),
    ("gitRepoUrl", "string", false),
    ("gitRepoRef", "string", false),
    ("gitPathDir", "string", false),
    ("environmentVariables", "object", false),
    ("notifications", "object", false),
    ("partitionLabel", "string", false),
    ("hidden", "boolean", false),
];

const OPS: &[Op] = &[
    Op { method: "get", path: "/services/", summary: "List Services", params: LIST_QUERY, body: &[], status: "200" },
    Op {
        method: "post",
        path: "/services/",
        summary: "Create a Service",
        params: &[],
        body: CREATE_FIELDS,
        status: "201",
    },
    Op { method: "get", path: "/services/{id}", summary: "Get a Service", params: ID, body: &[], status: "200" },
    Op {
        method: "put",
        path: "/services/{id}",
        summary: "Replace all attributes of this Service",
        params: ID,
        body: SERVICE_FIELDS,
        status: "200",
    },
    Op {
        method: "patch",
        path: "/services/{id}",
        summary: "Update some attributes of this Service",
        params: ID,
        body: SERVICE_FIELDS,
        status: "200",
    },
    Op {
        method: "delete",
        path: "/services/{id}",
        summary: "Archive a Service (deprecated, use the /archive endpoint instead)",
        params: ID,
        body: &[],
        status: "204",
    },
    Op {
        method: "put",
        path: "/services/{id}/archive",
        summary: "Update the archive status of this object",
        params: ID,
        body: &[("status", "boolean", true)],
        status: "200",
    },
    Op {
        method: "post",
        path: "/services/{id}/clone",
        summary: "Clone this Service",
        params: ID,
        body: &[],
        status: "201",
    },
    Op {
        method: "get",
        path: "/services/{service_id}/deployments",
        summary: "List deployments for a Service",
        params: &[
            ("service_id", "path", "integer", true),
            ("deployment_id", "query", "integer", false),
            ("limit", "query", "integer", false),
            ("page_num", "query", "integer", false),
            ("order", "query", "string", false),
            ("order_dir", "query", "string", false),
        ],
        body: &[],
        status: "200",
    },
    Op {
        method: "post",
        path: "/services/{service_id}/deployments",
        summary: "Deploy a Service",
        params: SERVICE_ID,
        body: &[("deploymentId", "integer", false)],
        status: "201",
    },
    Op {
        method: "get",
        path: "/services/{service_id}/deployments/{deployment_id}",
        summary: "Get details about a Service deployment",
        params: SERVICE_AND_DEPLOYMENT,
        body: &[],
        status: "200",
    },
    Op {
        method: "delete",
        path: "/services/{service_id}/deployments/{deployment_id}",
        summary: "Delete a Service deployment",
        params: SERVICE_AND_DEPLOYMENT,
        body: &[],
        status: "204",
    },
    Op {
        method: "post",
        path: "/services/{service_id}/redeploy",
        summary: "Redeploy a Service",
        params: SERVICE_ID,
        body: &[("deploymentId", "integer", false)],
        status: "201",
    },
    Op {
        method: "get",
        path: "/services/{id}/deployments/{deployment_id}/logs",
        summary: "Get the logs for a Service deployment",
        params: &[
            ("id", "path", "integer", true),
            ("deployment_id", "path", "integer", true),
            ("start_at", "query", "string", false),
            ("end_at", "query", "string", false),
            ("limit", "query", "integer", false),
        ],
        body: &[],
        status: "200",
    },
    Op {
        method: "post",
        path: "/services/{id}/tokens",
        summary: "Create a new long-lived service token",
        params: ID,
        body: &[("name", "string", true), ("machineToken", "boolean", false), ("expiresIn", "integer", false)],
        status: "201",
    },
    Op { method: "get", path: "/services/{id}/tokens", summary: "List tokens", params: ID, body: &[], status: "200" },
    Op {
        method: "delete",
        path: "/services/{id}/tokens/{token_id}",
        summary: "Revoke a token by id",
        params: &[("id", "path", "integer", true), ("token_id", "path", "integer", true)],
        body: &[],
        status: "204",
    },
    Op {
        method: "get",
        path: "/services/{id}/shares",
        summary: "List users and groups permissioned on this object",
        params: ID,
        body: &[],
        status: "200",
    },
    Op {
        method: "put",
        path: "/services/{id}/shares/users",
        summary: "Set the permissions users have on this object",
        params: ID,
        body: &[
            ("userIds", "array", true),
            ("permissionLevel", "string", true),
            ("shareEmailBody", "string", false),
            ("sendSharedEmail", "boolean", false),
        ],
        status: "200",
    },
    Op {
        method: "delete",
        path: "/services/{id}/shares/users/{user_id}",
        summary: "Revoke the permissions a user has on this object",
        params: &[("id", "path", "integer", true), ("user_id", "path", "integer", true)],
        body: &[],
        status: "204",
    },
    Op {
        method: "put",
        path: "/services/{id}/shares/groups",
        summary: "Set the permissions groups has on this object",
        params: ID,
        body: &[
            ("groupIds", "array", true),
            ("permissionLevel", "string", true),
            ("shareEmailBody", "string", false),
            ("sendSharedEmail", "boolean", false),
        ],
        status: "200",
    },
    Op {
        method: "delete",
        path: "/services/{id}/shares/groups/{group_id}",
        summary: "Revoke the permissions a group has on this object",
        params: &[("id", "path", "integer", true), ("group_id", "path", "integer", true)],
        body: &[],
        status: "204",
    },
    Op {
        method: "get",
        path: "/services/{id}/dependencies",
        summary: "List dependent objects for this object",
        params: &[("id", "path", "integer", true), ("user_id", "query", "integer", false)],
        body: &[],
        status: "200",
    },
    Op {
        method: "put",
        path: "/services/{id}/transfer",
        summary: "Transfer ownership of this object to another user",
        params: ID,
        body: &[
            ("userId", "integer", true),
            ("includeDependencies", "boolean", true),
            ("emailBody", "string", false),
            ("sendEmail", "boolean", false),
        ],
        status: "200",
    },
    Op {
        method: "get",
        path: "/services/{id}/projects",
        summary: "List the projects a Service belongs to",
        params: &[("id", "path", "integer", true), ("hidden", "query", "boolean", false)],
        body: &[],
        status: "200",
    },
    Op {
        method: "put",
        path: "/services/{id}/projects/{project_id}",
        summary: "Add a Service to a project",
        params: &[("id", "path", "integer", true), ("project_id", "path", "integer", true)],
        body: &[],
        status: "204",
    },
    Op {
        method: "delete",
        path: "/services/{id}/projects/{project_id}",
        summary: "Remove a Service from a project",
        params: &[("id", "path", "integer", true), ("project_id", "path", "integer", true)],
        body: &[],
        status: "204",
    },
];

/// JSON whose objects keep their keys in the order given: the SDK turns body properties into positional
/// arguments in document order (`put_shares_users(id, user_ids, permission_level)`), and a `Value` object
/// would sort them.
enum Node {
    Leaf(Value),
    Object(Vec<(String, Node)>),
    List(Vec<Node>),
}

impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Node::Leaf(value) => value.serialize(serializer),
            Node::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Node::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

fn object(entries: Vec<(&str, Node)>) -> Node {
    Node::Object(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn property(kind: &str) -> Node {
    Node::Leaf(match kind {
        "array" => json!({"type": "array", "items": {"type": "integer"}}),
        other => json!({ "type": other }),
    })
}

fn operation(op: &Op) -> Node {
    let mut parameters: Vec<Node> = op
        .params
        .iter()
        .map(|(name, location, kind, required)| {
            Node::Leaf(json!({"name": name, "in": location, "type": kind, "required": required}))
        })
        .collect();
    if !op.body.is_empty() {
        let properties = Node::Object(op.body.iter().map(|(n, k, _)| (n.to_string(), property(k))).collect());
        let required: Vec<&str> = op.body.iter().filter(|(_, _, r)| *r).map(|(n, _, _)| *n).collect();
        let schema = object(vec![
            ("type", Node::Leaf(json!("object"))),
            ("properties", properties),
            ("required", Node::Leaf(json!(required))),
        ]);
        parameters.push(object(vec![
            ("name", Node::Leaf(json!("Object"))),
            ("in", Node::Leaf(json!("body"))),
            ("required", Node::Leaf(json!(true))),
            ("schema", schema),
        ]));
    }
    // A GET whose path ends in a static segment answers with a list; its 200 schema says so, which is what
    // makes the SDK name the method list_*.
    let lists = op.method == "get" && !op.path.trim_end_matches('/').ends_with('}');
    let mut response = json!({"description": "success"});
    if lists {
        response["schema"] = json!({"type": "array", "items": {"type": "object"}});
    }
    object(vec![
        ("summary", Node::Leaf(json!(op.summary))),
        ("description", Node::Leaf(json!(op.summary))),
        ("parameters", Node::List(parameters)),
        ("responses", Node::Leaf(json!({ op.status: response }))),
    ])
}

/// The Swagger 2.0 document of the services API, as JSON text.
pub fn document() -> String {
    let mut paths: Vec<(String, Node)> = Vec::new();
    for op in OPS {
        let entry = match paths.iter_mut().find(|(p, _)| p == op.path) {
            Some((_, Node::Object(methods))) => methods,
            _ => {
                paths.push((op.path.to_string(), Node::Object(Vec::new())));
                match paths.last_mut() {
                    Some((_, Node::Object(methods))) => methods,
                    _ => unreachable!("just pushed an object"),
                }
            }
        };
        entry.push((op.method.to_string(), operation(op)));
    }
    let doc = object(vec![
        ("swagger", Node::Leaf(json!("2.0"))),
        ("info", Node::Leaf(json!({"title": "Civis Platform API (simulated services subset)", "version": "1.0"}))),
        ("basePath", Node::Leaf(json!("/"))),
        ("consumes", Node::Leaf(json!(["application/json"]))),
        ("produces", Node::Leaf(json!(["application/json"]))),
        (
            "securityDefinitions",
            Node::Leaf(json!({"api_key": {"type": "apiKey", "name": "Authorization", "in": "header"}})),
        ),
        ("paths", Node::Object(paths)),
        ("definitions", Node::Leaf(json!({}))),
    ]);
    serde_json::to_string(&doc).expect("the spec serialises")
}
