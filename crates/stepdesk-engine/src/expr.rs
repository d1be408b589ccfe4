//! Expressions: the CEL conditions of trigger `if`s, `wait_for_event` `if`s and cancellation
//! `if`s, evaluated the way Inngest evaluates them.
//!
//! Parsing and evaluation are the `cel` crate's (cel-rust). This module wraps it for the
//! rules Inngest's expressions follow where they differ from plain CEL:
//! - the variables are `event` (the run's triggering event), `async` (the incoming event, for
//!   waits and cancellations) and `vars`, all JSON; a variable not given reads as `null`;
//! - a missing field reads as `null` instead of failing: `event.data.nope == null` is true,
//!   `event.data.nope == "x"` false; so does a missing map key or list index;
//! - `==, !=, <, <=, >, >=` are loosely typed: int, uint and double compare by value
//!   (`1 == 1.0`), values of unrelated types are unequal and unordered (`"1" < 2` is false,
//!   not an error), and `null` orders as the other side's zero (`event.data.nope < 5`);
//! - `+` adds numbers of any kind, joins a string with a number or a bool (`"a-" + 1`), and
//!   `null + x` is `x`;
//! - `&&`, `||` take non-boolean operands by their truthiness (`event.data.a || event.data.b`);
//! - `x in y` is false when `y` is missing, `size(null)` is 0, and `contains`, `startsWith`,
//!   `endsWith`, `matches` on a missing field are false;
//! - `lowercase(s)` and `uppercase(s)`, Inngest's own functions.
//!
//! How: an expression is parsed once ([`Expr::parse`]) and its tree is rewritten once. Field
//! paths on the variables (`event.data.plan`, `has(async.data.id)`) become single references
//! that a resolver answers straight from the `serde_json::Value`s, so an evaluation converts
//! only the values it reads, never a whole event; the operators that cel-rust evaluates
//! itself (`==`, `<`, `+`, `in`, `[]`, field selection) become calls to the loose versions
//! below. What is not known (a variable other than the three, a function this module does not
//! provide) is refused when the expression is parsed, with the position, rather than making
//! every evaluation fail.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::ast::{operators, CallExpr, Expr as Node, IdedExpr, LiteralValue, SelectExpr};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, Kind,
    DYN_TYPE, NULL_TYPE, STRING_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError};
use serde_json::{Map, Value};

/// A variable an expression can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// The event that started the run.
    Event,
    /// The incoming event a wait or a cancellation is matched against.
    Async,
    /// Extra values (Inngest's `vars`; none are set by the engine today).
    Vars,
}

impl Var {
    fn from_name(name: &str) -> Option<Var> {
        match name {
            "event" => Some(Var::Event),
            "async" => Some(Var::Async),
            "vars" => Some(Var::Vars),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Var::Event => "event",
            Var::Async => "async",
            Var::Vars => "vars",
        }
    }
}

/// A bad expression (when parsed) or an evaluation that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expression `{expression}`: {reason}")]
pub struct ExprError {
    pub expression: String,
    pub reason: String,
}

/// The values an expression is evaluated against. A variable not set reads as `null`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    event: Option<&'a Value>,
    async_event: Option<&'a Value>,
    vars: Option<&'a Value>,
}

impl<'a> Vars<'a> {
    /// `event` alone (triggers).
    pub fn event(event: &'a Value) -> Vars<'a> {
        Vars {
            event: Some(event),
            ..Vars::default()
        }
    }

    /// `event` (the run's, or the part of it stored with a pause) and `async` (the incoming
    /// event).
    pub fn matching(event: Option<&'a Value>, incoming: &'a Value) -> Vars<'a> {
        Vars {
            event,
            async_event: Some(incoming),
            vars: None,
        }
    }

    pub fn with_vars(mut self, vars: &'a Value) -> Vars<'a> {
        self.vars = Some(vars);
        self
    }

    fn get(&self, var: Var) -> Option<&'a Value> {
        match var {
            Var::Event => self.event,
            Var::Async => self.async_event,
            Var::Vars => self.vars,
        }
    }
}

/// A parsed expression: parse once ([`Expr::parse`]), evaluate many times. Cheap to clone.
#[derive(Clone)]
pub struct Expr(Arc<Inner>);

struct Inner {
    source: String,
    tree: IdedExpr,
    /// The variable paths the rewritten tree refers to, by index (`@0`, `@1`, ...).
    paths: Vec<Path>,
    /// Set once a failed evaluation has been logged: an event storm logs once, not per event.
    warned: AtomicBool,
}

/// `event.data.plan` (read the value) or `has(event.data.plan)` (test for the key).
#[derive(Debug, Clone, PartialEq)]
struct Path {
    var: Var,
    fields: Vec<String>,
    has: bool,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.0.source).finish()
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.0.source == other.0.source
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.source)
    }
}

/// Functions an expression may call, besides the operators (CEL's standard ones that apply
/// to JSON values, and Inngest's `lowercase`/`uppercase`).
const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "lowercase",
    "uppercase",
];

/// Type names an expression may name (`type(x) == string`).
const TYPES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

// The loose operators and helpers the rewritten tree calls. Their names start with `@`,
// which no name in a source expression can.
const EQ: &str = "@loose_eq";
const NE: &str = "@loose_ne";
const LT: &str = "@loose_lt";
const LE: &str = "@loose_le";
const GT: &str = "@loose_gt";
const GE: &str = "@loose_ge";
const ADD: &str = "@loose_add";
const IN: &str = "@loose_in";
const INDEX: &str = "@loose_index";
const SELECT: &str = "@loose_select";
const HAS: &str = "@loose_has";
const TRUTHY: &str = "@truthy";

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(build_env()))
}

fn build_env() -> Env {
    let mut env = Env::stdlib();
    let dyn2 = || vec![DYN_TYPE, DYN_TYPE];
    let overloads: [(&str, Vec<_>, cel::common::functions::Function); 12] = [
        (EQ, dyn2(), loose_eq_fn),
        (NE, dyn2(), loose_ne_fn),
        (LT, dyn2(), loose_lt_fn),
        (LE, dyn2(), loose_le_fn),
        (GT, dyn2(), loose_gt_fn),
        (GE, dyn2(), loose_ge_fn),
        (ADD, dyn2(), loose_add_fn),
        (IN, dyn2(), loose_in_fn),
        (INDEX, dyn2(), loose_index_fn),
        (SELECT, dyn2(), loose_select_fn),
        (HAS, dyn2(), loose_has_fn),
        (TRUTHY, vec![DYN_TYPE], truthy_fn),
    ];
    for (name, args, f) in overloads {
        env.add_overload(name, name, args, f)
            .expect("the loose operators are declared once");
    }
    let more: [Result<(), cel::DeclarationError>; 8] = [
        env.add_overload(
            "lowercase",
            "lowercase_string",
            vec![STRING_TYPE],
            lowercase_fn,
        ),
        env.add_overload(
            "uppercase",
            "uppercase_string",
            vec![STRING_TYPE],
            uppercase_fn,
        ),
        // A missing field has size 0 and contains nothing (Inngest's rules for unknowns).
        env.add_overload("size", "size_null", vec![NULL_TYPE], zero_fn),
        env.add_member_overload("size", "null_size", NULL_TYPE, vec![], zero_fn),
        env.add_member_overload(
            "contains",
            "null_contains",
            NULL_TYPE,
            vec![DYN_TYPE],
            false_fn,
        ),
        env.add_member_overload(
            "startsWith",
            "null_starts",
            NULL_TYPE,
            vec![DYN_TYPE],
            false_fn,
        ),
        env.add_member_overload("endsWith", "null_ends", NULL_TYPE, vec![DYN_TYPE], false_fn),
        env.add_member_overload(
            "matches",
            "null_matches",
            NULL_TYPE,
            vec![DYN_TYPE],
            false_fn,
        ),
    ];
    for r in more {
        r.expect("the extra overloads do not clash with the standard library");
    }
    env
}

impl Expr {
    /// Parses an expression. Syntax errors, unknown variables (anything but `event`, `async`,
    /// `vars` and the variables of macros such as `exists(x, ...)`) and unknown functions are
    /// errors, with their position.
    pub fn parse(source: &str) -> Result<Expr, ExprError> {
        let fail = |reason: String| ExprError {
            expression: source.to_string(),
            reason,
        };
        if source.trim().is_empty() {
            return Err(fail("the expression is empty".into()));
        }
        let program = env().compile(source).map_err(|errors| {
            let parts: Vec<String> = errors
                .errors
                .iter()
                .map(|e| format!("syntax error at column {}: {}", e.pos.1 + 1, e.msg))
                .collect();
            fail(parts.join("; "))
        })?;
        let mut rewriter = Rewriter {
            paths: Vec::new(),
            bound: Vec::new(),
            error: None,
        };
        let tree = rewriter.rewrite(program.expression().clone());
        if let Some((id, reason)) = rewriter.error {
            let at = program
                .source_info()
                .offset_for(id)
                .map(|(start, _)| format!(" at column {}", start + 1))
                .unwrap_or_default();
            return Err(fail(format!("{reason}{at}")));
        }
        Ok(Expr(Arc::new(Inner {
            source: source.to_string(),
            tree,
            paths: rewriter.paths,
            warned: AtomicBool::new(false),
        })))
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Whether the expression reads `var`.
    pub fn reads(&self, var: Var) -> bool {
        self.0.paths.iter().any(|p| p.var == var)
    }

    /// Evaluates the expression as a condition: `Ok(true)` only when it yields `true`.
    /// A result that is not a boolean is an error.
    pub fn eval_bool(&self, vars: &Vars<'_>) -> Result<bool, ExprError> {
        self.with_result(vars, |value| match value.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(format!(
                "it yields a {}, not a boolean",
                value.get_type().name()
            )),
        })
    }

    /// Evaluates the expression to a JSON value (for keys and the like).
    pub fn eval(&self, vars: &Vars<'_>) -> Result<Value, ExprError> {
        self.with_result(vars, |value| {
            to_json(value).ok_or_else(|| {
                format!(
                    "it yields a {}, which has no JSON form",
                    value.get_type().name()
                )
            })
        })
    }

    fn with_result<T>(
        &self,
        vars: &Vars<'_>,
        f: impl FnOnce(&dyn Val) -> Result<T, String>,
    ) -> Result<T, ExprError> {
        let resolver = Resolver {
            paths: &self.0.paths,
            vars: *vars,
        };
        let mut ctx = Context::with_env(Arc::clone(env()));
        ctx.set_variable_resolver(&resolver);
        let result = cel::Value::resolve_val(&self.0.tree, &ctx)
            .map_err(|e| e.to_string())
            .and_then(|value| f(value.as_ref()));
        result.map_err(|reason| ExprError {
            expression: self.0.source.clone(),
            reason,
        })
    }

    /// [`Expr::eval_bool`] for matching: an evaluation that fails counts as no match. The
    /// first failure of this expression is logged as a warning (`what` says where it is
    /// used), later ones only at debug level, so a storm of events logs once.
    pub fn matches(&self, vars: &Vars<'_>, what: &str) -> bool {
        match self.eval_bool(vars) {
            Ok(b) => b,
            Err(e) => {
                if !self.0.warned.swap(true, AtomicOrdering::Relaxed) {
                    tracing::warn!(%what, expression = %self.0.source, error = %e.reason,
                        "expression failed; counted as no match (further failures of it are logged at debug level)");
                } else {
                    tracing::debug!(%what, expression = %self.0.source, error = %e.reason, "expression failed; no match");
                }
                false
            }
        }
    }

    /// The part of `event` that the expression reads, as a JSON object holding just those
    /// paths: stored with a pause when it is created, it resolves `event` then (as Inngest
    /// does), so matching later needs only the incoming event. `None` if the expression does
    /// not read `event`.
    pub fn event_part(&self, event: &Value) -> Option<Value> {
        let mut paths: Vec<&Path> = self
            .0
            .paths
            .iter()
            .filter(|p| p.var == Var::Event)
            .collect();
        if paths.is_empty() {
            return None;
        }
        // Shorter paths first, so a longer one never makes a placeholder where a shorter one
        // copies the real value.
        paths.sort_by_key(|p| p.fields.len());
        if paths[0].fields.is_empty() {
            return Some(event.clone());
        }
        let mut out = Map::new();
        for p in paths {
            copy_path(event, &mut out, &p.fields);
        }
        Some(Value::Object(out))
    }
}

/// Copies the value at `fields` in `src` into `dst`, creating the objects on the way.
fn copy_path(src: &Value, dst: &mut Map<String, Value>, fields: &[String]) {
    let Some((first, rest)) = fields.split_first() else {
        return;
    };
    let Some(value) = src.as_object().and_then(|m| m.get(first)) else {
        return;
    };
    if rest.is_empty() {
        dst.insert(first.clone(), value.clone());
        return;
    }
    if !value.is_object() {
        return; // a deeper field of a non-object is missing anyway
    }
    let slot = dst
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(inner) = slot {
        copy_path(value, inner, rest);
    }
}

/// Compiled expressions by source, for the ones stored with pauses: each incoming event is
/// matched against the expressions of the waits and cancellations for its name, and most of
/// those are the same few texts.
pub(crate) fn cached(source: &str) -> Result<Expr, ExprError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Expr>>> = OnceLock::new();
    const MAX: usize = 1024;
    let cache = CACHE.get_or_init(Default::default);
    if let Some(e) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(source) {
        return Ok(e.clone());
    }
    let expr = Expr::parse(source)?;
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX {
        map.clear();
    }
    map.insert(source.to_string(), expr.clone());
    Ok(expr)
}

/// A CEL string literal for `s` (single-quoted, escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Rewrites a parsed tree for Inngest's rules (see the module documentation).
struct Rewriter {
    paths: Vec<Path>,
    /// Names bound by the macros around the node (`x` in `list.exists(x, ...)`).
    bound: Vec<String>,
    /// The first problem found: (node id, reason).
    error: Option<(u64, String)>,
}

impl Rewriter {
    fn fail(&mut self, id: u64, reason: String) {
        if self.error.is_none() {
            self.error = Some((id, reason));
        }
    }

    /// `node` as a path on a variable (`event.data.x` → (Event, [data, x])), unless its root
    /// is not one of the variables or is shadowed by a macro's variable.
    fn var_path(&self, node: &Node) -> Option<(Var, Vec<String>)> {
        let mut fields = Vec::new();
        let mut at = node;
        loop {
            match at {
                Node::Ident(name) => {
                    if self.bound.iter().any(|b| b == name) {
                        return None;
                    }
                    let var = Var::from_name(name)?;
                    fields.reverse();
                    return Some((var, fields));
                }
                Node::Select(s) if !s.test => {
                    fields.push(s.field.clone());
                    at = &s.operand.expr;
                }
                _ => return None,
            }
        }
    }

    fn path_ref(&mut self, id: u64, path: Path) -> IdedExpr {
        let index = match self.paths.iter().position(|p| *p == path) {
            Some(i) => i,
            None => {
                self.paths.push(path);
                self.paths.len() - 1
            }
        };
        IdedExpr {
            id,
            expr: Node::Ident(format!("@{index}")),
        }
    }

    fn call(id: u64, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
        IdedExpr {
            id,
            expr: Node::Call(CallExpr {
                func_name: name.to_string(),
                target: None,
                args,
            }),
        }
    }

    fn string(id: u64, s: String) -> IdedExpr {
        IdedExpr {
            id,
            expr: Node::Literal(LiteralValue::String(CelString::from(s))),
        }
    }

    fn rewrite(&mut self, e: IdedExpr) -> IdedExpr {
        let id = e.id;
        match e.expr {
            Node::Ident(name) => {
                if self.bound.contains(&name) {
                    return IdedExpr {
                        id,
                        expr: Node::Ident(name),
                    };
                }
                if let Some(var) = Var::from_name(&name) {
                    return self.path_ref(
                        id,
                        Path {
                            var,
                            fields: Vec::new(),
                            has: false,
                        },
                    );
                }
                if !TYPES.contains(&name.as_str()) {
                    self.fail(
                        id,
                        format!(
                            "unknown name `{name}` (expressions read `event`, `async` and `vars`)"
                        ),
                    );
                }
                IdedExpr {
                    id,
                    expr: Node::Ident(name),
                }
            }
            Node::Select(s) => {
                let whole = Node::Select(SelectExpr {
                    operand: s.operand,
                    field: s.field,
                    test: false,
                });
                if let Some((var, fields)) = self.var_path(&whole) {
                    return self.path_ref(
                        id,
                        Path {
                            var,
                            fields,
                            has: s.test,
                        },
                    );
                }
                let Node::Select(SelectExpr { operand, field, .. }) = whole else {
                    unreachable!("built as a select just above")
                };
                let operand = self.rewrite(*operand);
                let field = Self::string(id, field);
                Self::call(id, if s.test { HAS } else { SELECT }, vec![operand, field])
            }
            Node::Call(call) => self.rewrite_call(id, call),
            Node::Comprehension(mut c) => {
                c.iter_range = self.rewrite(std::mem::take(&mut c.iter_range));
                c.accu_init = self.rewrite(std::mem::take(&mut c.accu_init));
                let depth = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v.clone());
                }
                self.bound.push(c.accu_var.clone());
                c.loop_cond = self.rewrite(std::mem::take(&mut c.loop_cond));
                c.loop_step = self.rewrite(std::mem::take(&mut c.loop_step));
                c.result = self.rewrite(std::mem::take(&mut c.result));
                self.bound.truncate(depth);
                IdedExpr {
                    id,
                    expr: Node::Comprehension(c),
                }
            }
            Node::List(mut list) => {
                list.elements = list.elements.into_iter().map(|e| self.rewrite(e)).collect();
                IdedExpr {
                    id,
                    expr: Node::List(list),
                }
            }
            Node::Map(mut map) => {
                for entry in &mut map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(m) = &mut entry.expr {
                        m.key = self.rewrite(std::mem::take(&mut m.key));
                        m.value = self.rewrite(std::mem::take(&mut m.value));
                    }
                }
                IdedExpr {
                    id,
                    expr: Node::Map(map),
                }
            }
            Node::Struct(_) => {
                self.fail(id, "message literals are not supported".into());
                IdedExpr {
                    id,
                    expr: Node::Unspecified,
                }
            }
            other => IdedExpr { id, expr: other },
        }
    }

    fn rewrite_call(&mut self, id: u64, call: CallExpr) -> IdedExpr {
        let CallExpr {
            func_name,
            target,
            args,
        } = call;
        let mut args: Vec<IdedExpr> = args.into_iter().map(|a| self.rewrite(a)).collect();
        let target = target.map(|t| Box::new(self.rewrite(*t)));
        let name = func_name.as_str();
        if target.is_none() && args.len() == 2 {
            let loose = match name {
                operators::EQUALS => Some(EQ),
                operators::NOT_EQUALS => Some(NE),
                operators::LESS => Some(LT),
                operators::LESS_EQUALS => Some(LE),
                operators::GREATER => Some(GT),
                operators::GREATER_EQUALS => Some(GE),
                operators::ADD => Some(ADD),
                operators::IN => Some(IN),
                operators::INDEX => Some(INDEX),
                _ => None,
            };
            if let Some(loose) = loose {
                return Self::call(id, loose, args);
            }
            if name == operators::LOGICAL_AND || name == operators::LOGICAL_OR {
                for arg in &mut args {
                    if !is_boolean(arg) {
                        let inner = std::mem::take(arg);
                        *arg = Self::call(inner.id, TRUTHY, vec![inner]);
                    }
                }
            }
        }
        if name == operators::CONDITIONAL && args.len() == 3 && !is_boolean(&args[0]) {
            let inner = std::mem::take(&mut args[0]);
            args[0] = Self::call(inner.id, TRUTHY, vec![inner]);
        }
        let is_operator = name.starts_with('_')
            || name.starts_with('@')
            || name == operators::LOGICAL_NOT
            || name == operators::NEGATE;
        if !is_operator && !FUNCTIONS.contains(&name) {
            self.fail(
                id,
                format!(
                    "unknown function `{name}` (known: {}, and the macros has, all, exists, exists_one, map, filter)",
                    FUNCTIONS.join(", ")
                ),
            );
        }
        IdedExpr {
            id,
            expr: Node::Call(CallExpr {
                func_name,
                target,
                args,
            }),
        }
    }
}

/// Whether a rewritten node always yields a boolean (so `&&`/`||` need not coerce it).
fn is_boolean(e: &IdedExpr) -> bool {
    match &e.expr {
        Node::Literal(LiteralValue::Boolean(_)) => true,
        Node::Call(c) => {
            matches!(
                c.func_name.as_str(),
                EQ | NE | LT | LE | GT | GE | IN | HAS | TRUTHY
            ) || c.func_name == operators::LOGICAL_AND
                || c.func_name == operators::LOGICAL_OR
                || c.func_name == operators::LOGICAL_NOT
                || matches!(
                    c.func_name.as_str(),
                    "contains" | "startsWith" | "endsWith" | "matches"
                )
        }
        _ => false,
    }
}

/// Answers the path references of a rewritten tree from the JSON values.
struct Resolver<'a> {
    paths: &'a [Path],
    vars: Vars<'a>,
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let index: usize = name.strip_prefix('@')?.parse().ok()?;
        let path = self.paths.get(index)?;
        let mut at = self.vars.get(path.var);
        for field in &path.fields {
            at = at.and_then(|v| v.as_object()).and_then(|m| m.get(field));
        }
        Some(if path.has {
            CowVal::owned(CelBool::from(at.is_some()))
        } else {
            at.map_or_else(|| CowVal::owned(CelNull), to_cel)
        })
    }
}

/// A JSON value as a CEL value; strings are borrowed, not copied.
fn to_cel(v: &Value) -> CowVal<'_, '_> {
    CowVal::Owned(to_cel_boxed(v))
}

fn to_cel_boxed(v: &Value) -> Box<dyn Val + '_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(
            items.iter().map(to_cel_boxed).collect::<Vec<_>>(),
        )),
        Value::Object(map) => Box::new(CelMap::from(
            map.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_cel_boxed(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// A CEL value as JSON, for the kinds JSON has.
fn to_json(v: &dyn Val) -> Option<Value> {
    Some(match v.get_type().kind() {
        Kind::NullType => Value::Null,
        Kind::Boolean => Value::Bool(*v.downcast_ref::<CelBool>()?.inner()),
        Kind::Int => Value::from(*v.downcast_ref::<CelInt>()?.inner()),
        Kind::UInt => Value::from(*v.downcast_ref::<CelUInt>()?.inner()),
        Kind::Double => Value::from(*v.downcast_ref::<CelDouble>()?.inner()),
        Kind::String => Value::String(v.downcast_ref::<CelString>()?.inner().to_string()),
        Kind::List => Value::Array(
            v.downcast_ref::<CelList>()?
                .inner()
                .iter()
                .map(|item| to_json(item.as_ref()))
                .collect::<Option<_>>()?,
        ),
        Kind::Map => {
            let mut out = Map::new();
            for (k, item) in v.downcast_ref::<CelMap>()?.inner() {
                let key = match to_json(k.inner())? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, to_json(item.as_ref())?);
            }
            Value::Object(out)
        }
        _ => return None,
    })
}

/// A number, as its CEL kind.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    UInt(u64),
    Double(f64),
}

fn num(v: &dyn Val) -> Option<Num> {
    match v.get_type().kind() {
        Kind::Int => v.downcast_ref::<CelInt>().map(|i| Num::Int(*i.inner())),
        Kind::UInt => v.downcast_ref::<CelUInt>().map(|u| Num::UInt(*u.inner())),
        Kind::Double => v
            .downcast_ref::<CelDouble>()
            .map(|d| Num::Double(*d.inner())),
        _ => None,
    }
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::UInt(u) => u as f64,
            Num::Double(d) => d,
        }
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::UInt(a), Num::UInt(b)) => Some(a.cmp(&b)),
            (Num::Int(a), Num::UInt(b)) => Some(if a < 0 {
                Ordering::Less
            } else {
                (a as u64).cmp(&b)
            }),
            (Num::UInt(_), Num::Int(_)) => other.cmp(self).map(Ordering::reverse),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

fn kind(v: &dyn Val) -> Kind {
    v.get_type().kind()
}

/// Inngest's `==`: numbers by value, `null` equals only `null` (and a missing field, which
/// reads as `null`), values of unrelated types are unequal.
pub(crate) fn loose_eq(a: &dyn Val, b: &dyn Val) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x.cmp(y) == Some(Ordering::Equal);
    }
    match (kind(a), kind(b)) {
        (Kind::List, Kind::List) => {
            match (a.downcast_ref::<CelList>(), b.downcast_ref::<CelList>()) {
                (Some(x), Some(y)) => {
                    x.inner().len() == y.inner().len()
                        && x.inner()
                            .iter()
                            .zip(y.inner())
                            .all(|(p, q)| loose_eq(p.as_ref(), q.as_ref()))
                }
                _ => a.equals(b),
            }
        }
        (ka, kb) if ka == kb => a.equals(b),
        _ => false,
    }
}

/// Inngest's ordering: numbers by value, strings and booleans among themselves, `null`
/// as the other side's zero; anything else is unordered (`None`, so every comparison is false).
fn loose_cmp(a: &dyn Val, b: &dyn Val) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x.cmp(y);
    }
    match (kind(a), kind(b)) {
        (Kind::NullType, Kind::NullType) => None,
        (Kind::NullType, _) => zero_cmp(b).map(Ordering::reverse),
        (_, Kind::NullType) => zero_cmp(a),
        (ka, kb) if ka == kb => a.as_comparer()?.compare(b).ok(),
        _ => None,
    }
}

/// How `v` orders against its kind's zero (`0`, `""`, `false`).
fn zero_cmp(v: &dyn Val) -> Option<Ordering> {
    if let Some(n) = num(v) {
        return n.cmp(Num::Int(0));
    }
    match kind(v) {
        Kind::String => Some(if v.downcast_ref::<CelString>()?.inner().is_empty() {
            Ordering::Equal
        } else {
            Ordering::Greater
        }),
        Kind::Boolean => Some(if *v.downcast_ref::<CelBool>()?.inner() {
            Ordering::Greater
        } else {
            Ordering::Equal
        }),
        _ => None,
    }
}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

fn bool_val<'b, 'v>(b: bool) -> CowVal<'b, 'v> {
    CowVal::owned(CelBool::from(b))
}

fn null_val<'b, 'v>() -> CowVal<'b, 'v> {
    CowVal::owned(CelNull)
}

fn two<'b, 'v>(args: Args<'b, 'v>) -> Result<(CowVal<'b, 'v>, CowVal<'b, 'v>), ExecutionError> {
    let n = args.len();
    let mut it = args.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => Ok((a, b)),
        _ => Err(ExecutionError::invalid_argument_count(2, n)),
    }
}

fn compare_with<'b, 'v>(args: Args<'b, 'v>, ok: fn(Ordering) -> bool) -> Ret<'b, 'v> {
    let (a, b) = two(args)?;
    Ok(bool_val(loose_cmp(a.as_ref(), b.as_ref()).is_some_and(ok)))
}

fn loose_eq_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (a, b) = two(args)?;
    Ok(bool_val(loose_eq(a.as_ref(), b.as_ref())))
}

fn loose_ne_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (a, b) = two(args)?;
    Ok(bool_val(!loose_eq(a.as_ref(), b.as_ref())))
}

fn loose_lt_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    compare_with(args, Ordering::is_lt)
}

fn loose_le_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    compare_with(args, Ordering::is_le)
}

fn loose_gt_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    compare_with(args, Ordering::is_gt)
}

fn loose_ge_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    compare_with(args, Ordering::is_ge)
}

/// A scalar as the text `+` joins to a string (`1`, `1.5`, `true`).
fn scalar_text(v: &dyn Val) -> Option<String> {
    if let Some(n) = num(v) {
        return Some(match n {
            Num::Int(i) => i.to_string(),
            Num::UInt(u) => u.to_string(),
            Num::Double(d) => d.to_string(),
        });
    }
    match kind(v) {
        Kind::String => Some(v.downcast_ref::<CelString>()?.inner().to_string()),
        Kind::Boolean => Some(v.downcast_ref::<CelBool>()?.inner().to_string()),
        _ => None,
    }
}

fn loose_add_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (a, b) = two(args)?;
    match (kind(a.as_ref()), kind(b.as_ref())) {
        (Kind::NullType, _) => return Ok(b),
        (_, Kind::NullType) => return Ok(a),
        _ => {}
    }
    if let (Some(x), Some(y)) = (num(a.as_ref()), num(b.as_ref())) {
        let overflow = || ExecutionError::function_error("+", "the sum overflows");
        return Ok(match (x, y) {
            (Num::Int(p), Num::Int(q)) => {
                CowVal::owned(CelInt::from(p.checked_add(q).ok_or_else(overflow)?))
            }
            (Num::UInt(p), Num::UInt(q)) => {
                CowVal::owned(CelUInt::from(p.checked_add(q).ok_or_else(overflow)?))
            }
            (p, q) => CowVal::owned(CelDouble::from(p.as_f64() + q.as_f64())),
        });
    }
    let (ka, kb) = (kind(a.as_ref()), kind(b.as_ref()));
    if ka == kb {
        if let Some(adder) = a.as_adder() {
            return Ok(CowVal::Owned(adder.add(b.as_ref())?.into_owned()));
        }
    }
    if ka == Kind::String || kb == Kind::String {
        if let (Some(x), Some(y)) = (scalar_text(a.as_ref()), scalar_text(b.as_ref())) {
            return Ok(CowVal::owned(CelString::from(x + &y)));
        }
    }
    Err(ExecutionError::function_error(
        "+",
        format!(
            "cannot add {} and {}",
            a.get_type().name(),
            b.get_type().name()
        ),
    ))
}

fn loose_in_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (x, c) = two(args)?;
    match kind(c.as_ref()) {
        Kind::NullType => Ok(bool_val(false)),
        Kind::List => {
            let Some(list) = c.downcast_ref::<CelList>() else {
                return Ok(bool_val(false));
            };
            Ok(bool_val(
                list.inner()
                    .iter()
                    .any(|item| loose_eq(x.as_ref(), item.as_ref())),
            ))
        }
        _ => match c.as_container() {
            Some(container) => Ok(bool_val(container.contains(x.as_ref()).unwrap_or(false))),
            None => Err(ExecutionError::function_error(
                "in",
                format!("cannot look into a {}", c.get_type().name()),
            )),
        },
    }
}

/// `v[key]` or `v.field`: a missing key or index reads as `null`, and so does anything of
/// `null`.
fn index<'b, 'v>(v: CowVal<'b, 'v>, key: &dyn Val, what: &str) -> Ret<'b, 'v> {
    if kind(v.as_ref()) == Kind::NullType {
        return Ok(null_val());
    }
    let missing = |e: &ExecutionError| {
        matches!(
            e,
            ExecutionError::NoSuchKey(_) | ExecutionError::IndexOutOfBounds(_)
        )
    };
    let no_indexer = |v: &dyn Val| {
        ExecutionError::function_error(what, format!("a {} has no fields", v.get_type().name()))
    };
    let found = match v {
        CowVal::Borrowed(v) => v.as_indexer().ok_or_else(|| no_indexer(v))?.get(key),
        CowVal::Owned(b) => b
            .as_indexer()
            .ok_or_else(|| no_indexer(b.as_ref()))?
            .get(key)
            .map(|found| CowVal::Owned(found.into_owned())),
    };
    match found {
        Ok(found) => Ok(found),
        Err(e) if missing(&e) => Ok(null_val()),
        Err(e) => Err(e),
    }
}

fn loose_index_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (v, key) = two(args)?;
    index(v, key.as_ref(), "[]")
}

fn loose_select_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (v, field) = two(args)?;
    index(v, field.as_ref(), ".")
}

fn loose_has_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let (v, field) = two(args)?;
    let present = match v.as_indexer() {
        Some(indexer) if kind(v.as_ref()) == Kind::Map => indexer.get(field.as_ref()).is_ok(),
        _ => false,
    };
    Ok(bool_val(present))
}

/// JS-like truthiness, for the operands of `&&` and `||`.
fn truthy_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let Some(v) = args.into_iter().next() else {
        return Err(ExecutionError::invalid_argument_count(1, 0));
    };
    let v = v.as_ref();
    let truthy = if let Some(n) = num(v) {
        n.as_f64() != 0.0
    } else {
        match kind(v) {
            Kind::NullType => false,
            Kind::Boolean => v.downcast_ref::<CelBool>().is_some_and(|b| *b.inner()),
            Kind::String => v
                .downcast_ref::<CelString>()
                .is_some_and(|s| !s.inner().is_empty()),
            _ => true,
        }
    };
    Ok(bool_val(truthy))
}

fn string_arg<'a>(args: &'a [CowVal<'_, '_>], f: &str) -> Result<&'a str, ExecutionError> {
    args.first()
        .and_then(|a| a.downcast_ref::<CelString>())
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::function_error(f, "expects a string"))
}

fn lowercase_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let s = string_arg(&args, "lowercase")?.to_lowercase();
    Ok(CowVal::owned(CelString::from(s)))
}

fn uppercase_fn<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let s = string_arg(&args, "uppercase")?.to_uppercase();
    Ok(CowVal::owned(CelString::from(s)))
}

fn zero_fn<'b, 'v>(_args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(CowVal::owned(CelInt::from(0)))
}

fn false_fn<'b, 'v>(_args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(bool_val(false))
}

/// [`loose_eq`] on JSON values (the `match` field of a wait: `async.<field> == event.<field>`).
pub(crate) fn loose_eq_json(a: &Value, b: &Value) -> bool {
    loose_eq(to_cel_boxed(a).as_ref(), to_cel_boxed(b).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "name": "app/user.created",
            "data": {
                "plan": "pro",
                "userId": "u1",
                "count": 3,
                "ratio": 1.5,
                "big": 18446744073709551615u64,
                "tags": ["a", "b"],
                "nested": {"deep": {"x": 1}},
                "flag": true,
                "empty": "",
                "nil": null,
                "items": [{"name": "one"}, {"name": "two"}]
            },
            "user": {},
            "id": "e1",
            "ts": 1
        })
    }

    fn eval_with(source: &str, vars: &Vars<'_>) -> Result<bool, ExprError> {
        Expr::parse(source).unwrap().eval_bool(vars)
    }

    fn check(source: &str) -> bool {
        let e = event();
        eval_with(source, &Vars::event(&e)).unwrap_or_else(|err| panic!("{source}: {err}"))
    }

    #[test]
    fn single_and_double_quoted_strings() {
        assert!(check("event.data.plan == 'pro'"));
        assert!(check("event.data.plan == \"pro\""));
        assert!(check("'it\\'s' == \"it's\""));
        assert!(!check("event.data.plan == 'free'"));
    }

    #[test]
    fn a_missing_field_reads_as_null() {
        assert!(check("event.data.nope == null"));
        assert!(!check("event.data.nope == 'x'"));
        assert!(check("event.data.nope != 'x'"));
        assert!(check("event.nope.deeper.still == null"));
        assert!(check("event.data.nil == null"));
        assert!(check("event.data.items[5] == null"));
        assert!(check("event.data.items[0].nope == null"));
        assert!(check("event.data['nope'] == null"));
        assert!(check("event.data.items[1].name == 'two'"));
        // A variable that is not given reads as null too.
        assert!(check("async.data.userId == null"));
        assert!(check("size(event.data.nope) == 0"));
        assert!(!check("event.data.nope.contains('x')"));
        assert!(!check("'x' in event.data.nope"));
    }

    #[test]
    fn numbers_compare_loosely_and_mixed_types_do_not_fail() {
        assert!(check("event.data.count == 3.0"));
        assert!(check("event.data.count == 3u"));
        assert!(check("1 == 1.0"));
        assert!(check("event.data.ratio > 1"));
        assert!(check("event.data.count >= 3 && event.data.count <= 3.5"));
        assert!(check("event.data.big > 5"));
        assert!(check("-1 < event.data.big"));
        // Unrelated types: unequal, unordered, no error.
        assert!(!check("event.data.plan == 3"));
        assert!(check("event.data.plan != 3"));
        assert!(!check("event.data.plan < 3"));
        assert!(!check("event.data.plan >= 3"));
        assert!(!check("'1' == 1"));
        assert!(!check("event.data.flag == 'true'"));
        // null orders as the other side's zero.
        assert!(check("event.data.nope < 5"));
        assert!(!check("event.data.nope > 5"));
        assert!(check("event.data.nope >= 0"));
        assert!(check("'a' > event.data.nope"));
        // Strings order among themselves.
        assert!(check("'abc' < 'abd'"));
    }

    #[test]
    fn operators_and_functions_users_write() {
        assert!(check("event.data.plan == 'pro' && event.data.count > 2"));
        assert!(check("event.data.plan == 'free' || event.data.flag"));
        assert!(check("!(event.data.plan == 'free')"));
        assert!(check("'a' in event.data.tags"));
        assert!(!check("'z' in event.data.tags"));
        assert!(check("'plan' in event.data"));
        assert!(check("(event.data.count > 2 ? 'big' : 'small') == 'big'"));
        assert!(check(
            "event.data.plan + '-' + event.data.userId == 'pro-u1'"
        ));
        assert!(check("'n' + event.data.count == 'n3'"));
        assert!(check("event.data.count + 1 == 4"));
        assert!(check("event.data.count + 0.5 == 3.5"));
        assert!(check("event.data.nope + 'x' == 'x'"));
        assert!(check("size(event.data.tags) == 2"));
        assert!(check("event.data.tags.size() == 2"));
        assert!(check("size(event.data.plan) == 3"));
        assert!(check("event.data.plan.startsWith('p')"));
        assert!(check("event.data.plan.endsWith('ro')"));
        assert!(check("event.data.plan.contains('r')"));
        assert!(check("event.data.userId.matches('^u[0-9]+$')"));
        assert!(check("has(event.data.plan)"));
        assert!(check("has(event.data.nil)"));
        assert!(!check("has(event.data.nope)"));
        assert!(!check("has(event.nope.deeper)"));
        assert!(check("has(event.data.items[0].name)"));
        assert!(!check("has(event.data.items[0].nope)"));
        assert!(check("lowercase('PrO') == event.data.plan"));
        assert!(check("uppercase(event.data.plan) == 'PRO'"));
        assert!(check("event.data.items.exists(i, i.name == 'two')"));
        assert!(check("event.data.items.all(i, has(i.name))"));
        assert!(check("event.data.tags.map(t, t + '!') == ['a!', 'b!']"));
        assert!(check("event.data.nested.deep.x == 1"));
        assert!(check("event.data == event.data"));
        // && and || take other values by their truthiness.
        assert!(check("event.data.plan && event.data.count"));
        assert!(!check("event.data.empty || event.data.nope"));
        assert!(check("event.data.nope ? false : true"));
    }

    #[test]
    fn event_and_async() {
        let e = event();
        let incoming = json!({"name": "app/x", "data": {"userId": "u1", "n": 3.0}});
        let other = json!({"name": "app/x", "data": {"userId": "u2"}});
        let src = "event.data.userId == async.data.userId";
        assert!(eval_with(src, &Vars::matching(Some(&e), &incoming)).unwrap());
        assert!(!eval_with(src, &Vars::matching(Some(&e), &other)).unwrap());
        assert!(eval_with(
            "async.data.n == event.data.count",
            &Vars::matching(Some(&e), &incoming)
        )
        .unwrap());
        let expr = Expr::parse(src).unwrap();
        assert!(expr.reads(Var::Event) && expr.reads(Var::Async) && !expr.reads(Var::Vars));
        let vars = json!({"limit": 2});
        assert!(Expr::parse("vars.limit < event.data.count")
            .unwrap()
            .eval_bool(&Vars::event(&e).with_vars(&vars))
            .unwrap());
    }

    #[test]
    fn the_event_part_holds_only_what_the_expression_reads() {
        let e = event();
        let expr = Expr::parse(
            "event.data.userId == async.data.userId && has(event.data.nested.deep) && event.data.nope == null",
        )
        .unwrap();
        let part = expr.event_part(&e).unwrap();
        assert_eq!(
            part,
            json!({"data": {"userId": "u1", "nested": {"deep": {"x": 1}}}})
        );
        // Matching against the part gives what matching against the whole event gives.
        let incoming = json!({"data": {"userId": "u1"}});
        assert!(expr
            .eval_bool(&Vars::matching(Some(&part), &incoming))
            .unwrap());
        assert!(Expr::parse("async.data.x == 1")
            .unwrap()
            .event_part(&e)
            .is_none());
        let whole = Expr::parse("event.data[async.data.key] == 1").unwrap();
        assert_eq!(
            whole.event_part(&e),
            Some(json!({"data": e["data"].clone()}))
        );
        let all = Expr::parse("size(event) > 0").unwrap();
        assert_eq!(all.event_part(&e), Some(e.clone()));
    }

    #[test]
    fn bad_expressions_are_clear_errors() {
        let cases = [
            ("", "empty"),
            ("event.data.plan ==", "syntax error"),
            ("event.data.plan = 'pro'", "syntax error"),
            ("evnt.data.plan == 'pro'", "unknown name `evnt`"),
            ("event.data.plan == pro", "unknown name `pro`"),
            (
                "lower(event.data.plan) == 'pro'",
                "unknown function `lower`",
            ),
            (
                "event.data.plan.toLowerCase() == 'pro'",
                "unknown function `toLowerCase`",
            ),
        ];
        for (source, expected) in cases {
            let err = Expr::parse(source).unwrap_err();
            assert!(err.to_string().contains(expected), "{source}: {err}");
            assert_eq!(err.expression, source);
        }
        // A position is given.
        let err = Expr::parse("event.data.x == 1 && evnt.y").unwrap_err();
        assert!(err.reason.contains("column 22"), "{err}");
    }

    #[test]
    fn failures_at_evaluation_are_errors_and_do_not_match() {
        let e = event();
        let expr = Expr::parse("event.data.plan").unwrap();
        let err = expr.eval_bool(&Vars::event(&e)).unwrap_err();
        assert!(err.reason.contains("not a boolean"), "{err}");
        assert!(!expr.matches(&Vars::event(&e), "test"));
        let bad = Expr::parse("event.data.tags + 1 == 2").unwrap();
        assert!(bad.eval_bool(&Vars::event(&e)).is_err());
        assert!(!bad.matches(&Vars::event(&e), "test"));
    }

    #[test]
    fn eval_gives_json() {
        let e = event();
        let v = |s: &str| Expr::parse(s).unwrap().eval(&Vars::event(&e)).unwrap();
        assert_eq!(
            v("event.data.plan + '-' + event.data.userId"),
            json!("pro-u1")
        );
        assert_eq!(v("event.data.count * 2"), json!(6));
        assert_eq!(v("event.data.nested"), json!({"deep": {"x": 1}}));
        assert_eq!(v("event.data.tags"), json!(["a", "b"]));
        assert_eq!(v("event.data.nope"), Value::Null);
    }

    #[test]
    fn quoting_makes_a_literal() {
        let e = json!({"data": {"id": "it's \\ odd"}});
        let src = format!("event.data.id == {}", quote("it's \\ odd"));
        assert!(eval_with(&src, &Vars::event(&e)).unwrap());
    }

    #[test]
    fn loose_json_equality() {
        assert!(loose_eq_json(&json!(1), &json!(1.0)));
        assert!(!loose_eq_json(&json!("1"), &json!(1)));
        assert!(loose_eq_json(&json!({"a": [1]}), &json!({"a": [1]})));
        assert!(loose_eq_json(&Value::Null, &Value::Null));
    }

    /// A quick measure of parse and evaluation costs (release build):
    /// `cargo test --release -p stepdesk-engine --lib expr::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn speed() {
        use std::time::Instant;
        let e = json!({
            "name": "shop/order.placed", "id": "01J0000000000000000000000", "ts": 1733000000000u64,
            "user": {}, "data": {
                "orderId": "ord_123456", "plan": "pro", "amount": 129.5, "currency": "EUR",
                "customer": {"id": "cus_42", "email": "ada@example.com", "country": "FR"},
                "items": [{"sku": "A-1", "qty": 2, "price": 40.0}, {"sku": "B-7", "qty": 1, "price": 49.5}]
            }
        });
        let incoming =
            json!({"name": "shop/order.paid", "data": {"orderId": "ord_123456", "ok": true}});
        let n = 200_000;
        let time = |label: &str, f: &mut dyn FnMut() -> bool| {
            let start = Instant::now();
            let mut hits = 0;
            for _ in 0..n {
                hits += usize::from(std::hint::black_box(f()));
            }
            let per = start.elapsed().as_nanos() as f64 / n as f64;
            println!("{label}: {per:.0} ns per evaluation ({hits} true)");
        };
        let start = Instant::now();
        for _ in 0..2_000 {
            std::hint::black_box(Expr::parse("event.data.plan == 'pro'").unwrap());
        }
        println!(
            "parse `event.data.plan == 'pro'`: {:.1} µs",
            start.elapsed().as_micros() as f64 / 2_000.0
        );
        let simple = Expr::parse("event.data.plan == 'pro'").unwrap();
        time("`event.data.plan == 'pro'`", &mut || {
            simple.eval_bool(&Vars::event(&e)).unwrap()
        });
        time("the same, strict JSON lookup (no CEL)", &mut || {
            crate::event::lookup(&e, "data.plan") == Some(&json!("pro"))
        });
        let compound = Expr::parse(
            "event.data.amount >= 100 && event.data.customer.country in ['FR', 'DE'] && event.data.plan.startsWith('p')",
        )
        .unwrap();
        time("a three-clause condition", &mut || {
            compound.eval_bool(&Vars::event(&e)).unwrap()
        });
        let wait =
            Expr::parse("async.data.orderId == event.data.orderId && async.data.ok").unwrap();
        let part = wait.event_part(&e).unwrap();
        time(
            "a wait's `async.data.orderId == event.data.orderId && async.data.ok` (stored part)",
            &mut || {
                wait.eval_bool(&Vars::matching(Some(&part), &incoming))
                    .unwrap()
            },
        );
        let exists = Expr::parse("event.data.items.exists(i, i.qty > 1)").unwrap();
        time("`event.data.items.exists(i, i.qty > 1)`", &mut || {
            exists.eval_bool(&Vars::event(&e)).unwrap()
        });
    }

    #[test]
    fn cached_expressions_are_shared() {
        let a = cached("event.data.x == 1").unwrap();
        let b = cached("event.data.x == 1").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(cached("event.data.x ==").is_err());
    }
}
