//! The evaluator: lazy, memoised evaluation of lowered expressions with Nix's semantics, file
//! loading and `import`, and the strict conversion to JSON that `nix-instantiate --eval --strict
//! --json` performs. Builtins live in `builtins/`, one table; parsing and scoping in `lower.rs`.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::Value as Json;

use super::builtins;
use super::diag::{EvalError, Pos, Sources};
use super::lower::{
    canon_path, AttrKey, AttrsDef, BinOp, Expr, ExprRef, Lowerer, Names, Param, Part,
};
use super::sandbox::{Denied, Sandbox};
use super::value::{
    format_float_json, format_float_to_string, Attr, Attrs, AttrsBuilder, EnvData, EnvId, PrimApp,
    Strict, ThunkId, ThunkState, Value,
};

/// How deep evaluation may nest before we report it instead of overflowing the stack. The
/// evaluation thread's stack is sized for this (see `STACK_SIZE`).
const MAX_DEPTH: u32 = 10_000;

/// Stack of the evaluation thread: generous, as deep but legitimate recursion is common in Nix.
pub(crate) const STACK_SIZE: usize = 1 << 30;

/// Source size from which a file's syntax tree is freed on a thread of its own: below it,
/// starting the thread costs more than freeing the tree.
const BACKGROUND_FREE_BYTES: usize = 16 * 1024;

pub use super::diag::Locations;

pub(crate) struct Evaluator {
    pub sources: Sources,
    thunks: Vec<ThunkState>,
    envs: Vec<EnvData>,
    base_env: EnvId,
    /// `import`ed files by absolute path: each is evaluated once.
    files: HashMap<PathBuf, ThunkId>,
    depth: u32,
    home: Option<PathBuf>,
    /// The file whose evaluation was asked for, shown in errors without a position.
    root_shown: String,
    /// Names of the base scope (builtins) and their slots.
    globals: FxHashMap<Rc<str>, u32>,
    /// Names met while lowering, shared by every file.
    names: Names,
    /// Store paths already computed, by source path.
    store_paths: HashMap<PathBuf, String>,
    /// What may be read; every file and environment access goes through it.
    pub sandbox: Sandbox,
    /// Told when each file has been parsed and lowered (the benchmark counts bytes per phase).
    pub phase: fn(&'static str),
}

impl Evaluator {
    pub fn new(root_shown: &str, sandbox: Sandbox) -> Self {
        let mut ev = Evaluator {
            sources: Sources::default(),
            thunks: Vec::new(),
            envs: Vec::new(),
            base_env: 0,
            files: HashMap::new(),
            depth: 0,
            home: std::env::var_os("HOME").map(PathBuf::from),
            root_shown: root_shown.to_owned(),
            globals: FxHashMap::default(),
            store_paths: HashMap::new(),
            names: Names::default(),
            sandbox,
            phase: |_| {},
        };
        let (names, slots) = builtins::globals(&mut ev);
        ev.globals = names;
        ev.envs.push(EnvData {
            parent: None,
            slots,
            with: None,
        });
        ev
    }

    pub fn render(&self, err: &EvalError) -> String {
        err.render(&self.sources, &self.root_shown)
    }

    // ----- arenas -------------------------------------------------------------------------

    pub fn alloc(&mut self, state: ThunkState) -> ThunkId {
        self.thunks.push(state);
        (self.thunks.len() - 1) as ThunkId
    }

    pub fn done(&mut self, v: Value) -> ThunkId {
        self.alloc(ThunkState::Done(v))
    }

    pub fn set_done(&mut self, t: ThunkId, v: Value) {
        self.thunks[t as usize] = ThunkState::Done(v);
    }

    fn new_env(&mut self, parent: EnvId, slots: Vec<ThunkId>, with: Option<ThunkId>) -> EnvId {
        self.envs.push(EnvData {
            parent: Some(parent),
            slots,
            with,
        });
        (self.envs.len() - 1) as EnvId
    }

    /// A thunk for `expr`; constants and variables need none of their own.
    fn thunk(&mut self, expr: &ExprRef, env: EnvId) -> ThunkId {
        match &**expr {
            Expr::Int(i) => self.done(Value::Int(*i)),
            Expr::Float(f) => self.done(Value::Float(*f)),
            Expr::Str(s) => self.done(Value::Str(s.clone())),
            Expr::Path(p) => self.done(Value::Path(p.clone())),
            Expr::Var { depth, slot, .. } => self.lookup(env, *depth, *slot),
            _ => self.alloc(ThunkState::Expr(expr.clone(), env)),
        }
    }

    /// Sets a pre-allocated slot's thunk to evaluate `expr`.
    fn fill(&mut self, t: ThunkId, expr: &ExprRef, env: EnvId) {
        self.thunks[t as usize] = match &**expr {
            Expr::Int(i) => ThunkState::Done(Value::Int(*i)),
            Expr::Str(s) => ThunkState::Done(Value::Str(s.clone())),
            _ => ThunkState::Expr(expr.clone(), env),
        };
    }

    fn lookup(&self, mut env: EnvId, depth: u32, slot: u32) -> ThunkId {
        for _ in 0..depth {
            env = self.envs[env as usize]
                .parent
                .expect("lowering resolved the variable to an enclosing scope");
        }
        self.envs[env as usize].slots[slot as usize]
    }

    // ----- forcing ------------------------------------------------------------------------

    pub fn force(&mut self, t: ThunkId, pos: Option<Pos>) -> Result<Value, EvalError> {
        if let ThunkState::Done(v) = &self.thunks[t as usize] {
            return Ok(v.clone());
        }
        let state = std::mem::replace(&mut self.thunks[t as usize], ThunkState::Blackhole(pos));
        let value = match state {
            ThunkState::Expr(expr, env) => {
                self.thunks[t as usize] = ThunkState::Blackhole(expr_pos(&expr).or(pos));
                let v = self.eval(&expr, env);
                if v.is_err() {
                    // `tryEval` may catch the error; forcing again must fail the same way.
                    self.thunks[t as usize] = ThunkState::Expr(expr, env);
                }
                v
            }
            ThunkState::Apply(f, arg) => {
                let v = self.force(f, pos).and_then(|fv| self.apply(fv, arg, pos));
                if v.is_err() {
                    self.thunks[t as usize] = ThunkState::Apply(f, arg);
                }
                v
            }
            ThunkState::Blackhole(at) => {
                self.thunks[t as usize] = ThunkState::Blackhole(at);
                Err(EvalError::eval(
                    "infinite recursion encountered",
                    at.or(pos),
                ))
            }
            ThunkState::Unsupported(name) => {
                self.thunks[t as usize] = ThunkState::Unsupported(name);
                Err(EvalError::unsupported(format!("builtins.{name}"), pos))
            }
            ThunkState::Done(_) => unreachable!("handled above"),
        }?;
        self.thunks[t as usize] = ThunkState::Done(value.clone());
        Ok(value)
    }

    fn enter(&mut self, pos: Option<Pos>) -> Result<(), EvalError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Err(EvalError::eval(
                "stack overflow (possible infinite recursion)",
                pos,
            ));
        }
        Ok(())
    }

    pub fn eval(&mut self, expr: &ExprRef, env: EnvId) -> Result<Value, EvalError> {
        self.enter(expr_pos(expr))?;
        let out = self.eval_inner(expr, env);
        self.depth -= 1;
        out
    }

    fn eval_inner(&mut self, expr: &ExprRef, env: EnvId) -> Result<Value, EvalError> {
        match &**expr {
            Expr::Int(i) => Ok(Value::Int(*i)),
            Expr::Float(f) => Ok(Value::Float(*f)),
            Expr::Str(s) => Ok(Value::Str(s.clone())),
            Expr::Path(p) => Ok(Value::Path(p.clone())),
            Expr::PathInterp { dir, parts, pos } => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Lit(s) => text.push_str(s),
                        Part::Expr(e, p) => {
                            let v = self.eval(e, env)?;
                            text.push_str(&self.coerce_to_string(v, false, false, *p)?);
                        }
                    }
                }
                let joined = super::lower::resolve_path_text(dir, self.home.as_deref(), &text)
                    .ok_or_else(|| EvalError::eval("HOME is not set", Some(*pos)))?;
                Ok(Value::Path(Rc::from(joined)))
            }
            Expr::Search(name, pos) => Err(EvalError::unsupported(
                format!("the search path {name}"),
                Some(*pos),
            )),
            Expr::Interp(parts, _) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Lit(s) => text.push_str(s),
                        Part::Expr(e, p) => {
                            let v = self.eval(e, env)?;
                            text.push_str(&self.coerce_to_string(v, false, true, *p)?);
                        }
                    }
                }
                Ok(Value::str(&text))
            }
            Expr::Var { depth, slot, pos } => {
                let t = self.lookup(env, *depth, *slot);
                self.force(t, Some(*pos))
            }
            Expr::WithVar(name, pos) => {
                let mut cur = Some(env);
                while let Some(e) = cur {
                    let data = &self.envs[e as usize];
                    let parent = data.parent;
                    if let Some(w) = data.with {
                        let attrs = self.force_attrs(w, *pos)?;
                        if let Some(a) = attrs.get(&**name) {
                            return self.force(a.value, Some(*pos));
                        }
                    }
                    cur = parent;
                }
                Err(EvalError::eval(
                    format!("undefined variable '{name}'"),
                    Some(*pos),
                ))
            }
            Expr::Select {
                expr: target,
                path,
                default,
                pos,
            } => {
                let mut v = self.eval(target, env)?;
                for key in path {
                    let name = self.attr_name(key, env)?;
                    let found = match &v {
                        Value::Attrs(a) => a.get(&*name).copied(),
                        other if default.is_none() => {
                            return Err(EvalError::eval(
                                format!("value is {} while a set was expected", other.show_type()),
                                Some(*pos),
                            ))
                        }
                        _ => None,
                    };
                    match found {
                        Some(a) => v = self.force(a.value, Some(*pos))?,
                        None => {
                            return match default {
                                Some(d) => self.eval(d, env),
                                None => Err(EvalError::eval(
                                    format!("attribute '{name}' missing"),
                                    Some(*pos),
                                )),
                            }
                        }
                    }
                }
                Ok(v)
            }
            Expr::HasAttr { expr: target, path } => {
                let mut v = self.eval(target, env)?;
                for (i, key) in path.iter().enumerate() {
                    let name = self.attr_name(key, env)?;
                    let Value::Attrs(a) = &v else {
                        return Ok(Value::Bool(false));
                    };
                    let Some(found) = a.get(&*name).copied() else {
                        return Ok(Value::Bool(false));
                    };
                    // The last attribute's value is not needed, so it is not forced.
                    if i + 1 < path.len() {
                        v = self.force(found.value, expr_pos(target))?;
                    }
                }
                Ok(Value::Bool(true))
            }
            Expr::Attrs(def) => {
                let (attrs, _) = self.build_attrs(def, env)?;
                Ok(Value::Attrs(Rc::new(attrs)))
            }
            Expr::Let(def, body) => {
                let (_, inner) = self.build_attrs(def, env)?;
                self.eval(body, inner)
            }
            Expr::List(items) => {
                let ids = items.iter().map(|e| self.thunk(e, env)).collect();
                Ok(Value::List(Rc::new(ids)))
            }
            Expr::Lambda(def) => Ok(Value::Lambda(def.clone(), env)),
            Expr::Apply(f, arg, pos) => {
                let fv = self.eval(f, env)?;
                let a = self.thunk(arg, env);
                self.apply(fv, a, Some(*pos))
            }
            Expr::If(c, t, e, pos) => {
                if self.eval_bool(c, env, *pos)? {
                    self.eval(t, env)
                } else {
                    self.eval(e, env)
                }
            }
            Expr::Assert(c, body, text, pos) => {
                if self.eval_bool(c, env, *pos)? {
                    self.eval(body, env)
                } else {
                    Err(EvalError {
                        thrown: true,
                        ..EvalError::eval(format!("assertion '{text}' failed"), Some(*pos))
                    })
                }
            }
            Expr::With(ns, body) => {
                let w = self.thunk(ns, env);
                let inner = self.new_env(env, Vec::new(), Some(w));
                self.eval(body, inner)
            }
            Expr::Not(e, pos) => Ok(Value::Bool(!self.eval_bool(e, env, *pos)?)),
            Expr::Neg(e, pos) => match self.eval(e, env)? {
                // Nix parses `-x` as `__sub 0 x`, so overflow is reported as a subtraction.
                Value::Int(i) => checked_int(BinOp::Sub, 0, i, *pos),
                Value::Float(f) => Ok(Value::Float(-f)),
                other => Err(type_error(&other, "an integer", *pos)),
            },
            Expr::Bin(op, l, r, pos) => self.binop(*op, l, r, env, *pos),
            Expr::CurPos(pos) => {
                let (line, column) = self.sources.line_col(*pos);
                let file = self
                    .sources
                    .get(pos.file)
                    .path
                    .to_string_lossy()
                    .into_owned();
                let mut set = AttrsBuilder::new();
                set.insert("file", self.done(Value::str(&file)));
                set.insert("line", self.done(Value::Int(line as i64)));
                set.insert("column", self.done(Value::Int(column as i64)));
                Ok(set.build())
            }
        }
    }

    fn eval_bool(&mut self, e: &ExprRef, env: EnvId, pos: Pos) -> Result<bool, EvalError> {
        match self.eval(e, env)? {
            Value::Bool(b) => Ok(b),
            other => Err(type_error(&other, "a Boolean", expr_pos(e).unwrap_or(pos))),
        }
    }

    fn attr_name(&mut self, key: &AttrKey, env: EnvId) -> Result<Rc<str>, EvalError> {
        match key {
            AttrKey::Static(s) => Ok(s.clone()),
            AttrKey::Dynamic(e, pos) => match self.eval(e, env)? {
                Value::Str(s) => Ok(s),
                other => Err(type_error(&other, "a string", *pos)),
            },
        }
    }

    /// Builds a set (or a `let` scope); returns the set and the scope its values see.
    fn build_attrs(&mut self, def: &AttrsDef, env: EnvId) -> Result<(Attrs, EnvId), EvalError> {
        let inner = if def.rec {
            self.new_env(env, Vec::with_capacity(def.statics.len()), None)
        } else {
            env
        };
        let mut attrs = Attrs::new();
        if def.rec {
            // Every slot exists before any value is made, so values may refer to later names.
            let slots: Vec<ThunkId> = def
                .statics
                .iter()
                .map(|_| self.alloc(ThunkState::Blackhole(None)))
                .collect();
            self.envs[inner as usize].slots = slots.clone();
            for (b, t) in def.statics.iter().zip(slots) {
                let scope = if b.outer { env } else { inner };
                self.fill(t, &b.value, scope);
                attrs.insert(
                    b.name.clone(),
                    Attr {
                        value: t,
                        pos: Some(b.pos),
                    },
                );
            }
        } else {
            for b in &def.statics {
                let t = self.thunk(&b.value, env);
                attrs.insert(
                    b.name.clone(),
                    Attr {
                        value: t,
                        pos: Some(b.pos),
                    },
                );
            }
        }
        for d in &def.dynamics {
            let name = match self.eval(&d.name, inner)? {
                Value::Null => continue,
                Value::Str(s) => s,
                other => return Err(type_error(&other, "a string", d.pos)),
            };
            if let Some(prev) = attrs.get(&name) {
                return Err(EvalError {
                    previous: prev.pos,
                    ..EvalError::eval(
                        format!("dynamic attribute '{name}' already defined"),
                        Some(d.pos),
                    )
                });
            }
            let t = self.thunk(&d.value, inner);
            attrs.insert(
                name,
                Attr {
                    value: t,
                    pos: Some(d.pos),
                },
            );
        }
        Ok((attrs, inner))
    }

    // ----- application --------------------------------------------------------------------

    pub fn apply(&mut self, f: Value, arg: ThunkId, pos: Option<Pos>) -> Result<Value, EvalError> {
        self.enter(pos)?;
        let out = self.apply_inner(f, arg, pos);
        self.depth -= 1;
        out
    }

    fn apply_inner(
        &mut self,
        f: Value,
        arg: ThunkId,
        pos: Option<Pos>,
    ) -> Result<Value, EvalError> {
        match f {
            Value::Lambda(def, env) => {
                let slots = match &def.param {
                    Param::Ident => vec![arg],
                    Param::Pattern { .. } => Vec::new(),
                };
                let inner = self.new_env(env, slots, None);
                if let Param::Pattern {
                    formals,
                    ellipsis,
                    bind,
                } = &def.param
                {
                    let given = self.force_attrs(arg, pos.unwrap_or(def.pos))?;
                    if !ellipsis {
                        if let Some(extra) =
                            given.keys().find(|k| !formals.iter().any(|(n, _)| n == *k))
                        {
                            return Err(EvalError::eval(
                                format!(
                                    "function 'anonymous lambda' called with unexpected argument '{extra}'"
                                ),
                                pos.or(Some(def.pos)),
                            ));
                        }
                    }
                    let mut slots = Vec::with_capacity(formals.len() + 1);
                    let mut defaults = Vec::new();
                    for (name, default) in formals {
                        let t = match (given.get(name), default) {
                            (Some(a), _) => a.value,
                            (None, Some(d)) => {
                                // Defaults may refer to any formal: filled once all slots exist.
                                let t = self.alloc(ThunkState::Blackhole(None));
                                defaults.push((t, d));
                                t
                            }
                            (None, None) => {
                                return Err(EvalError::eval(
                                    format!(
                                        "function 'anonymous lambda' called without required argument '{name}'"
                                    ),
                                    pos.or(Some(def.pos)),
                                ))
                            }
                        };
                        slots.push(t);
                    }
                    if *bind {
                        slots.push(arg);
                    }
                    self.envs[inner as usize].slots = slots;
                    for (t, d) in defaults {
                        self.fill(t, d, inner);
                    }
                }
                self.eval(&def.body, inner)
            }
            Value::Prim(p) => {
                let mut args = p.args.clone();
                args.push(arg);
                if args.len() < p.prim.arity {
                    return Ok(Value::Prim(Rc::new(PrimApp { prim: p.prim, args })));
                }
                (p.prim.fun)(self, &args, pos)
            }
            Value::Attrs(a) if a.contains_key("__functor") => {
                let functor = self.force(a["__functor"].value, pos)?;
                let me = self.done(Value::Attrs(a));
                let partial = self.apply(functor, me, pos)?;
                self.apply(partial, arg, pos)
            }
            other => Err(EvalError::eval(
                format!(
                    "attempt to call something which is not a function but {}",
                    other.show_type()
                ),
                pos,
            )),
        }
    }

    /// Applies `f` to already-made thunks, strictly.
    pub fn call(
        &mut self,
        f: &Value,
        args: &[ThunkId],
        pos: Option<Pos>,
    ) -> Result<Value, EvalError> {
        let mut v = f.clone();
        for a in args {
            v = self.apply(v, *a, pos)?;
        }
        Ok(v)
    }

    // ----- typed forcing ------------------------------------------------------------------

    pub fn force_attrs(&mut self, t: ThunkId, pos: Pos) -> Result<Rc<Attrs>, EvalError> {
        match self.force(t, Some(pos))? {
            Value::Attrs(a) => Ok(a),
            other => Err(type_error(&other, "a set", pos)),
        }
    }

    pub fn force_list(
        &mut self,
        t: ThunkId,
        pos: Option<Pos>,
    ) -> Result<Rc<Vec<ThunkId>>, EvalError> {
        match self.force(t, pos)? {
            Value::List(l) => Ok(l),
            other => Err(type_error_opt(&other, "a list", pos)),
        }
    }

    pub fn force_str(&mut self, t: ThunkId, pos: Option<Pos>) -> Result<Rc<str>, EvalError> {
        match self.force(t, pos)? {
            Value::Str(s) => Ok(s),
            other => Err(type_error_opt(&other, "a string", pos)),
        }
    }

    pub fn force_int(&mut self, t: ThunkId, pos: Option<Pos>) -> Result<i64, EvalError> {
        match self.force(t, pos)? {
            Value::Int(i) => Ok(i),
            other => Err(type_error_opt(&other, "an integer", pos)),
        }
    }

    /// Nix's `coerceToString`; `more` is `toString`'s wider set of accepted types, `copy`
    /// turns paths into the store paths Nix would copy them to.
    pub fn coerce_to_string(
        &mut self,
        v: Value,
        more: bool,
        copy: bool,
        pos: Pos,
    ) -> Result<String, EvalError> {
        self.enter(Some(pos))?;
        let out = self.coerce_inner(v, more, copy, pos);
        self.depth -= 1;
        out
    }

    fn coerce_inner(
        &mut self,
        v: Value,
        more: bool,
        copy: bool,
        pos: Pos,
    ) -> Result<String, EvalError> {
        let shown = v.show_type();
        match v {
            Value::Str(s) => return Ok(s.to_string()),
            Value::Path(p) if copy => return self.copy_to_store(&p, Some(pos)),
            Value::Path(p) => return Ok(p.to_string_lossy().into_owned()),
            Value::Attrs(a) => {
                if let Some(f) = a.get("__toString") {
                    let f = self.force(f.value, Some(pos))?;
                    let me = self.done(Value::Attrs(a.clone()));
                    let r = self.apply(f, me, Some(pos))?;
                    return self.coerce_to_string(r, more, copy, pos);
                }
                if let Some(o) = a.get("outPath") {
                    let o = self.force(o.value, Some(pos))?;
                    return self.coerce_to_string(o, more, copy, pos);
                }
            }
            _ if more => match v {
                Value::Null | Value::Bool(false) => return Ok(String::new()),
                Value::Bool(true) => return Ok("1".to_owned()),
                Value::Int(i) => return Ok(i.to_string()),
                Value::Float(f) => return Ok(format_float_to_string(f)),
                Value::List(l) => {
                    let mut out = String::new();
                    for (i, t) in l.iter().enumerate() {
                        let item = self.force(*t, Some(pos))?;
                        let empty_list = matches!(&item, Value::List(x) if x.is_empty());
                        out.push_str(&self.coerce_to_string(item, more, copy, pos)?);
                        if i + 1 < l.len() && !empty_list {
                            out.push(' ');
                        }
                    }
                    return Ok(out);
                }
                _ => {}
            },
            _ => {}
        }
        Err(EvalError::eval(
            format!("cannot coerce {shown} to a string"),
            Some(pos),
        ))
    }

    /// The store path Nix would copy `path` to (nothing is written).
    pub fn copy_to_store(&mut self, path: &Path, pos: Option<Pos>) -> Result<String, EvalError> {
        if let Some(s) = self.store_paths.get(path) {
            return Ok(s.clone());
        }
        let s = self
            .sandbox
            .store_path(path)
            .map_err(|e| self.denied(e, "getting status of", "access to path", path, pos))?;
        self.store_paths.insert(path.to_path_buf(), s.clone());
        Ok(s)
    }

    // ----- operators ----------------------------------------------------------------------

    fn binop(
        &mut self,
        op: BinOp,
        l: &ExprRef,
        r: &ExprRef,
        env: EnvId,
        pos: Pos,
    ) -> Result<Value, EvalError> {
        match op {
            BinOp::And => {
                return Ok(Value::Bool(
                    self.eval_bool(l, env, pos)? && self.eval_bool(r, env, pos)?,
                ))
            }
            BinOp::Or => {
                return Ok(Value::Bool(
                    self.eval_bool(l, env, pos)? || self.eval_bool(r, env, pos)?,
                ))
            }
            BinOp::Impl => {
                return Ok(Value::Bool(
                    !self.eval_bool(l, env, pos)? || self.eval_bool(r, env, pos)?,
                ))
            }
            _ => {}
        }
        let a = self.eval(l, env)?;
        let b = self.eval(r, env)?;
        self.binop_values(op, a, b, pos)
    }

    pub fn binop_values(
        &mut self,
        op: BinOp,
        a: Value,
        b: Value,
        pos: Pos,
    ) -> Result<Value, EvalError> {
        use Value::*;
        Ok(match op {
            BinOp::Eq => Bool(self.equal(&a, &b, pos)?),
            BinOp::Ne => Bool(!self.equal(&a, &b, pos)?),
            BinOp::Lt => Bool(self.less(&a, &b, pos)?),
            BinOp::Gt => Bool(self.less(&b, &a, pos)?),
            BinOp::Le => Bool(!self.less(&b, &a, pos)?),
            BinOp::Ge => Bool(!self.less(&a, &b, pos)?),
            BinOp::Concat => match (a, b) {
                (List(x), List(y)) => {
                    let mut v = Vec::with_capacity(x.len() + y.len());
                    v.extend_from_slice(&x);
                    v.extend_from_slice(&y);
                    List(Rc::new(v))
                }
                (List(_), other) | (other, _) => return Err(type_error(&other, "a list", pos)),
            },
            BinOp::Update => match (a, b) {
                (Attrs(x), Attrs(y)) => {
                    if x.is_empty() {
                        Attrs(y)
                    } else if y.is_empty() {
                        Attrs(x)
                    } else {
                        let mut m = (*x).clone();
                        m.extend(y.iter().map(|(k, v)| (k.clone(), *v)));
                        Attrs(Rc::new(m))
                    }
                }
                (Attrs(_), other) | (other, _) => return Err(type_error(&other, "a set", pos)),
            },
            BinOp::Add => match (a, b) {
                (Int(x), Int(y)) => checked_int(op, x, y, pos)?,
                (Int(x), Float(y)) => Float(x as f64 + y),
                (Float(x), Int(y)) => Float(x + y as f64),
                (Float(x), Float(y)) => Float(x + y),
                (Int(_) | Float(_), other) => {
                    return Err(EvalError::eval(
                        format!("cannot add {} to an integer", other.show_type()),
                        Some(pos),
                    ))
                }
                (Path(p), other) => {
                    let s = self.coerce_to_string(other, false, false, pos)?;
                    Path(Rc::from(canon_path(&format!("{}{s}", p.to_string_lossy()))))
                }
                (first, other) => {
                    let mut s = self.coerce_to_string(first, false, true, pos)?;
                    s.push_str(&self.coerce_to_string(other, false, true, pos)?);
                    Value::str(&s)
                }
            },
            BinOp::Sub | BinOp::Mul | BinOp::Div => {
                let (x, y) = match (&a, &b) {
                    (Int(_) | Float(_), Int(_) | Float(_)) => (a, b),
                    (Int(_) | Float(_), other) | (other, _) => {
                        return Err(type_error(other, "an integer", pos))
                    }
                };
                if op == BinOp::Div && matches!(y, Int(0))
                    || matches!(y, Float(f) if op == BinOp::Div && f == 0.0)
                {
                    return Err(EvalError::eval("division by zero", Some(pos)));
                }
                match (x, y) {
                    (Int(x), Int(y)) => checked_int(op, x, y, pos)?,
                    (x, y) => {
                        let (x, y) = (as_f64(&x), as_f64(&y));
                        Float(match op {
                            BinOp::Sub => x - y,
                            BinOp::Mul => x * y,
                            _ => x / y,
                        })
                    }
                }
            }
            BinOp::And | BinOp::Or | BinOp::Impl => unreachable!("short-circuited in binop"),
        })
    }

    /// Nix's `eqValues`: deep, forcing, functions are never equal.
    pub fn equal(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<bool, EvalError> {
        use Value::*;
        Ok(match (a, b) {
            (Int(x), Int(y)) => x == y,
            (Int(_) | Float(_), Int(_) | Float(_)) => as_f64(a) == as_f64(b),
            (Str(x), Str(y)) => x == y,
            (Path(x), Path(y)) => x == y,
            (Null, Null) => true,
            (Bool(x), Bool(y)) => x == y,
            // Nix compares the same list or set object, and the same element, by identity.
            (List(x), List(y)) if Rc::ptr_eq(x, y) => true,
            (Attrs(x), Attrs(y)) if Rc::ptr_eq(x, y) => true,
            (List(x), List(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    if p == q {
                        continue;
                    }
                    let p = self.force(*p, Some(pos))?;
                    let q = self.force(*q, Some(pos))?;
                    self.enter(Some(pos))?;
                    let same = self.equal(&p, &q, pos);
                    self.depth -= 1;
                    if !same? {
                        return Ok(false);
                    }
                }
                true
            }
            (Attrs(x), Attrs(y)) => {
                if let (Some(px), Some(py)) = (x.get("outPath"), y.get("outPath")) {
                    if self.is_derivation(x, pos)? && self.is_derivation(y, pos)? {
                        let p = self.force(px.value, Some(pos))?;
                        let q = self.force(py.value, Some(pos))?;
                        return self.equal(&p, &q, pos);
                    }
                }
                if x.len() != y.len() || !x.keys().eq(y.keys()) {
                    return Ok(false);
                }
                for (p, q) in x.values().zip(y.values()) {
                    if p.value == q.value {
                        continue;
                    }
                    let p = self.force(p.value, Some(pos))?;
                    let q = self.force(q.value, Some(pos))?;
                    self.enter(Some(pos))?;
                    let same = self.equal(&p, &q, pos);
                    self.depth -= 1;
                    if !same? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }

    fn is_derivation(&mut self, a: &Attrs, pos: Pos) -> Result<bool, EvalError> {
        match a.get("type") {
            Some(t) => {
                Ok(matches!(self.force(t.value, Some(pos))?, Value::Str(s) if &*s == "derivation"))
            }
            None => Ok(false),
        }
    }

    pub fn less(&mut self, a: &Value, b: &Value, pos: Pos) -> Result<bool, EvalError> {
        use Value::*;
        Ok(match (a, b) {
            (Int(x), Int(y)) => x < y,
            (Int(_) | Float(_), Int(_) | Float(_)) => as_f64(a) < as_f64(b),
            (Str(x), Str(y)) => x < y,
            (Path(x), Path(y)) => x.as_os_str() < y.as_os_str(),
            (List(x), List(y)) => {
                for (p, q) in x.iter().zip(y.iter()) {
                    let p = self.force(*p, Some(pos))?;
                    let q = self.force(*q, Some(pos))?;
                    if !self.equal(&p, &q, pos)? {
                        self.enter(Some(pos))?;
                        let r = self.less(&p, &q, pos);
                        self.depth -= 1;
                        return r;
                    }
                }
                x.len() < y.len()
            }
            _ => {
                return Err(EvalError::eval(
                    format!("cannot compare {} with {}", a.show_type(), b.show_type()),
                    Some(pos),
                ))
            }
        })
    }

    // ----- files --------------------------------------------------------------------------

    /// The (lazy) value of a file; each file is read, parsed and evaluated at most once.
    pub fn import(&mut self, path: &Path, pos: Option<Pos>) -> Result<ThunkId, EvalError> {
        let mut file = canon_path(&path.to_string_lossy());
        let deny =
            |ev: &Self, e, file: &Path| ev.denied(e, "getting status of", "importing", file, pos);
        if self
            .sandbox
            .is_dir(&file)
            .map_err(|e| deny(self, e, &file))?
        {
            file.push("default.nix");
        }
        if let Some(t) = self.files.get(&file) {
            return Ok(*t);
        }
        let text = self.sandbox.read(&file).map_err(|e| deny(self, e, &file))?;
        let text = String::from_utf8_lossy(&text).into_owned();
        let shown = match pos {
            Some(p) => shown_relative(
                &self.sources.get(p.file).shown,
                &self.sources.get(p.file).path,
                &file,
            ),
            None => file.display().to_string(),
        };
        let t = self.load_source(shown, file.clone(), Rc::from(text))?;
        self.files.insert(file, t);
        Ok(t)
    }

    /// The located error for a file access the sandbox refused: Nix's message for an I/O
    /// error (`{io_what} '{path}': {reason}`), ours for a path outside the rules root.
    pub fn denied(
        &self,
        e: Denied,
        io_what: &str,
        outside_what: &str,
        path: &Path,
        pos: Option<Pos>,
    ) -> EvalError {
        match e {
            Denied::Outside => {
                EvalError::eval(self.sandbox.outside_message(outside_what, path), pos)
            }
            Denied::Io(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => "No such file or directory".to_owned(),
                    std::io::ErrorKind::PermissionDenied => "Permission denied".to_owned(),
                    _ => e.to_string(),
                };
                EvalError::eval(format!("{io_what} '{}': {reason}", path.display()), pos)
            }
        }
    }

    /// Parses and lowers a file; returns a thunk of its value.
    pub fn load_source(
        &mut self,
        shown: String,
        path: PathBuf,
        text: Rc<str>,
    ) -> Result<ThunkId, EvalError> {
        let id = self.sources.add(shown, path.clone(), text.clone());
        // Growing these arenas by doubling frees large blocks, which makes glibc's allocator
        // consolidate every small free chunk each time; sizing them from the source avoids it.
        self.thunks.reserve(text.len() / 8);
        self.envs.reserve(text.len() / 64);
        let parse = super::syntax::parse(id, &text)?;
        if let Some(err) = parse.errors().first() {
            return Err(super::syntax::error(id, &text, err));
        }
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        (self.phase)("parse");
        let mut lowerer = Lowerer::new(
            id,
            &dir,
            self.globals.clone(),
            self.home.as_deref(),
            &mut self.names,
        );
        let expr = lowerer.lower_file(parse.syntax().green());
        // The syntax tree is not needed once lowered. A large one takes milliseconds to free,
        // node by node: that is done on another core while evaluation goes on (the tree is
        // shared by atomic counts, nothing else refers to it). Freeing recurses as deep as the
        // tree goes, which is as deep as rnix parsed, whatever lowering accepted (a 180 KB
        // chain `[] ++ [] ++ …` overflowed a default 2 MiB stack): the evaluation's stack.
        if text.len() >= BACKGROUND_FREE_BYTES {
            let _ = std::thread::Builder::new()
                .name("rules-free".to_owned())
                .stack_size(STACK_SIZE)
                .spawn(move || drop(parse));
        } else {
            drop(parse);
        }
        let expr = expr?;
        (self.phase)("lower");
        Ok(self.alloc(ThunkState::Expr(expr, self.base_env)))
    }

    // ----- results ------------------------------------------------------------------------

    /// `nix-instantiate --eval`'s auto-call: a function whose arguments all have defaults is
    /// called with them.
    pub fn auto_call(&mut self, v: Value) -> Result<Value, EvalError> {
        if let Value::Lambda(def, _) = &v {
            if let Param::Pattern { formals, .. } = &def.param {
                if let Some((name, _)) = formals.iter().find(|(_, d)| d.is_none()) {
                    return Err(EvalError::eval(
                        format!("cannot evaluate a function that has an argument without a value ('{name}')"),
                        Some(def.pos),
                    ));
                }
                let empty = self.done(Value::Attrs(Rc::new(Attrs::new())));
                let pos = def.pos;
                return self.apply(v, empty, Some(pos));
            }
        }
        Ok(v)
    }

    /// Deeply forces a value as Nix's `--strict --json` does, recording where the first two
    /// levels of attributes were defined.
    pub fn strict_of(&mut self, v: Value, locations: &mut Locations) -> Result<Strict, EvalError> {
        let strict = self.strict_inner(v, None, 0, locations)?;
        locations.set_files(&self.sources);
        Ok(strict)
    }

    /// [`Self::strict_of`] of a rules value, forcing only the rules whose name `keep` accepts:
    /// the others stay in the result by name (their definition recorded in `locations`) with
    /// `null` for a value, and whatever their value would do (fail, read files, loop) is not
    /// done. A value that is not a plain attribute set is forced whole.
    pub fn strict_of_rules(
        &mut self,
        v: Value,
        keep: &dyn Fn(&str) -> bool,
        locations: &mut Locations,
    ) -> Result<Strict, EvalError> {
        let Value::Attrs(a) = &v else {
            return self.strict_of(v, locations);
        };
        if a.get("outPath").is_some() {
            return self.strict_of(v, locations);
        }
        let mut out = Vec::with_capacity(a.len());
        for (k, attr) in a.iter() {
            locations.push_secret(&self.sources, attr.pos);
            let value = if keep(k) {
                let item = self.force(attr.value, attr.pos)?;
                self.strict_inner(item, attr.pos, 1, locations)?
            } else {
                Strict::Null
            };
            out.push((k.clone(), value));
        }
        locations.set_files(&self.sources);
        Ok(Strict::Attrs(out))
    }

    /// [`Self::strict_of`], as JSON.
    pub fn json_of(&mut self, v: Value, locations: &mut Locations) -> Result<Json, EvalError> {
        Ok(self.strict_of(v, locations)?.to_json())
    }

    fn strict_inner(
        &mut self,
        v: Value,
        pos: Option<Pos>,
        level: usize,
        locations: &mut Locations,
    ) -> Result<Strict, EvalError> {
        self.enter(pos)?;
        let out = (|| {
            Ok(match v {
                Value::Null => Strict::Null,
                Value::Bool(b) => Strict::Bool(b),
                Value::Int(i) => Strict::Num(i.into()),
                Value::Float(f) => {
                    let text = format_float_json(f);
                    match serde_json::from_str(&text) {
                        Ok(Json::Number(n)) => Strict::Num(n),
                        _ => Strict::Str(Rc::from(text)),
                    }
                }
                Value::Str(s) => Strict::Str(s),
                Value::Path(p) => Strict::Str(Rc::from(self.copy_to_store(&p, pos)?)),
                Value::List(l) => {
                    let mut out = Vec::with_capacity(l.len());
                    for t in l.iter() {
                        let item = self.force(*t, pos)?;
                        out.push(self.strict_inner(item, pos, level + 1, locations)?);
                    }
                    Strict::List(out)
                }
                Value::Attrs(a) => {
                    if let Some(o) = a.get("outPath") {
                        let o = self.force(o.value, o.pos.or(pos))?;
                        return self.strict_inner(o, pos, level, locations);
                    }
                    let mut out = Vec::with_capacity(a.len());
                    for (k, attr) in a.iter() {
                        match level {
                            0 => locations.push_secret(&self.sources, attr.pos),
                            1 => locations.push_attr(&self.sources, attr.pos),
                            _ => {}
                        }
                        let item = self.force(attr.value, attr.pos.or(pos))?;
                        let j = self.strict_inner(item, attr.pos.or(pos), level + 1, locations);
                        out.push((k.clone(), j?));
                    }
                    Strict::Attrs(out)
                }
                Value::Lambda(..) | Value::Prim(_) => {
                    return Err(EvalError::eval("cannot convert a function to JSON", pos))
                }
            })
        })();
        self.depth -= 1;
        out
    }
}

/// Integer `+ - * /` (divisor already known non-zero); overflow is an error, as in Nix since
/// 2.24 (older Nix wrapped around silently, except for division).
fn checked_int(op: BinOp, x: i64, y: i64, pos: Pos) -> Result<Value, EvalError> {
    let (result, verb, sign) = match op {
        BinOp::Add => (x.checked_add(y), "adding", '+'),
        BinOp::Sub => (x.checked_sub(y), "subtracting", '-'),
        BinOp::Mul => (x.checked_mul(y), "multiplying", '*'),
        _ => (x.checked_div(y), "dividing", '/'),
    };
    result.map(Value::Int).ok_or_else(|| {
        EvalError::eval(
            format!("integer overflow in {verb} {x} {sign} {y}"),
            Some(pos),
        )
    })
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

pub(crate) fn type_error(v: &Value, wanted: &str, pos: Pos) -> EvalError {
    type_error_opt(v, wanted, Some(pos))
}

pub(crate) fn type_error_opt(v: &Value, wanted: &str, pos: Option<Pos>) -> EvalError {
    EvalError::eval(
        format!("value is {} while {wanted} was expected", v.show_type()),
        pos,
    )
}

/// Where an expression starts, for errors about it.
fn expr_pos(e: &Expr) -> Option<Pos> {
    match e {
        Expr::PathInterp { pos, .. }
        | Expr::Search(_, pos)
        | Expr::Interp(_, pos)
        | Expr::Var { pos, .. }
        | Expr::WithVar(_, pos)
        | Expr::Select { pos, .. }
        | Expr::Apply(_, _, pos)
        | Expr::If(_, _, _, pos)
        | Expr::Assert(_, _, _, pos)
        | Expr::Bin(_, _, _, pos)
        | Expr::Not(_, pos)
        | Expr::Neg(_, pos)
        | Expr::CurPos(pos) => Some(*pos),
        Expr::Lambda(def) => Some(def.pos),
        _ => None,
    }
}

/// How to name an imported file in messages: relative like the importing file's name when the
/// importing file was named relatively.
fn shown_relative(importer_shown: &str, importer_path: &Path, file: &Path) -> String {
    let importer_dir = importer_path.parent().unwrap_or(Path::new("/"));
    let shown_dir = Path::new(importer_shown).parent().unwrap_or(Path::new(""));
    match file.strip_prefix(importer_dir) {
        Ok(rel) if Path::new(importer_shown).is_relative() => {
            super::normalize(&shown_dir.join(rel)).display().to_string()
        }
        _ => file.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::rules::evaluate_source;
    use crate::rules::testing::{check_err, check_eval};

    #[test]
    fn unused_failing_bindings_are_never_evaluated() {
        check_eval("let a = throw \"no\"; b = 1; in b", json!(1));
        check_eval("{ a = 1; b = throw \"no\"; }.a", json!(1));
        check_eval("builtins.length [ (throw \"no\") ]", json!(1));
        check_eval("(x: 2) (throw \"no\")", json!(2));
        check_eval("({ a ? throw \"no\" }: 3) { }", json!(3));
    }

    #[test]
    fn thunks_are_evaluated_once() {
        // A shared thunk traced twice would print twice; the value must be the same object.
        check_eval(
            "let x = builtins.trace \"once\" 1; in [ x x ]",
            json!([1, 1]),
        );
    }

    #[test]
    fn let_and_rec_bindings_see_each_other_in_any_order() {
        check_eval("let a = b; b = 1; in a", json!(1));
        check_eval("rec { a = b + 1; b = 1; }", json!({"a": 2, "b": 1}));
        check_eval(
            "let even = n: if n == 0 then true else odd (n - 1); odd = n: if n == 0 then false else even (n - 1); in even 10",
            json!(true),
        );
    }

    #[test]
    fn a_cycle_is_infinite_recursion_at_the_binding() {
        let msg = check_err(
            "let\n  a = b;\n  b = a;\nin a",
            "infinite recursion encountered",
        );
        assert!(msg.contains("input.nix:2:7"), "{msg}");
        check_err("rec { a = a; }.a", "infinite recursion encountered");
    }

    #[test]
    fn unbounded_recursion_through_functions_is_a_clean_error() {
        let msg = check_err("let f = n: f (n + 1); in f 0", "stack overflow");
        assert!(msg.contains("input.nix:1:"), "{msg}");
        check_err("let f = n: 1 + f n; in f 0", "stack overflow");
        for src in [
            "let f = n: builtins.foldl' (a: b: f n) 0 [ 1 ]; in f 0",
            "let f = n: builtins.sort (a: b: f n) [ 1 2 ]; in f 0",
            "let f = n: builtins.map (x: f n) [ 1 ]; in f 0",
            "let s = { __toString = self: \"${self}\"; }; in \"${s}\"",
            "let f = n: [ (f n) ]; in f 0",
            "let f = n: builtins.deepSeq (f n) 1; in f 0",
            "let a = { x = a; }; in builtins.toJSON a",
            "let a = [ a ]; b = [ b ]; in a == b",
            "let f = n: builtins.concatStringsSep \"\" [ (f n) ]; in f 0",
        ] {
            check_err(src, "stack overflow");
        }
    }

    #[test]
    fn deep_but_finite_recursion_works() {
        check_eval(
            "let f = n: if n == 0 then 0 else 1 + f (n - 1); in f 2000",
            json!(2000),
        );
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        check_err(&deep, "unsupported in ragenix's evaluator");
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        check_err(&deep, "unsupported in ragenix's evaluator");
    }

    #[test]
    fn a_deep_syntax_tree_is_freed_without_overflowing_a_stack() {
        // Large enough to be freed on a thread of its own; each `++` nests the tree one deeper.
        for deep in [
            format!("[] {}", "++ [] ".repeat(30_000)),
            format!("{{}} {}", "// {} ".repeat(30_000)),
        ] {
            assert!(deep.len() >= super::BACKGROUND_FREE_BYTES);
            check_err(&deep, "unsupported in ragenix's evaluator");
        }
    }

    #[test]
    fn attribute_paths_merge_like_nix() {
        check_eval("{ a.b = 1; a.c = 2; }", json!({"a": {"b": 1, "c": 2}}));
        check_eval(
            "{ a.b = 1; a = { c = 2; }; }",
            json!({"a": {"b": 1, "c": 2}}),
        );
        check_eval(
            "{ a = { c = 2; }; a.b = 1; }",
            json!({"a": {"b": 1, "c": 2}}),
        );
        check_eval(
            "{ \"a.age\".publicKeys = [ ]; }",
            json!({"a.age": {"publicKeys": []}}),
        );
        check_eval(
            "let n = \"x\"; in { ${n} = 1; \"${n}y\" = 2; ${null} = 3; }",
            json!({"x": 1, "xy": 2}),
        );
        check_eval("let a.b = 1; in a", json!({"b": 1}));
    }

    #[test]
    fn duplicate_attributes_are_reported_where_nix_reports_them() {
        let msg = check_err(
            "{\n  a = 1;\n  a = 2;\n}",
            "attribute 'a' already defined at input.nix:2:3",
        );
        assert!(msg.starts_with("input.nix:3:3: error:"), "{msg}");
        check_err(
            "{ a.b = 1; a.b = 2; }",
            "attribute 'a.b' already defined at input.nix:1:3",
        );
        check_err("{ a = 1; a.b = 2; }", "attribute 'a.b' already defined");
        check_err("let a = 1; a = 2; in a", "attribute 'a' already defined");
        check_err(
            "let x = 1; in { inherit x; x = 2; }",
            "attribute 'x' already defined",
        );
        check_err("{ a = 1; ${\"a\"} = 2; }", "attribute 'a' already defined");
        check_err(
            "{ ${\"a\" + \"\"} = 1; ${\"a\" + \"\"} = 2; }",
            "dynamic attribute 'a' already defined",
        );
    }

    #[test]
    fn undefined_variables_are_errors_even_when_unused() {
        check_err("let unused = nope; in 1", "undefined variable 'nope'");
        check_err("with { }; nope", "undefined variable 'nope'");
    }

    #[test]
    fn with_is_dynamic_and_loses_to_lexical_bindings() {
        check_eval("with { a = 1; }; a", json!(1));
        check_eval("let a = 2; in with { a = 1; }; a", json!(2));
        check_eval("with { a = 1; }; with { a = 3; }; a", json!(3));
        check_eval("with { a = 1; }; with { b = 3; }; a", json!(1));
    }

    #[test]
    fn inherit_takes_from_the_enclosing_scope_or_a_set() {
        check_eval("let x = 1; in { inherit x; }", json!({"x": 1}));
        check_eval(
            "let s = { a = 1; b = 2; }; in { inherit (s) a b; }",
            json!({"a": 1, "b": 2}),
        );
        check_eval(
            "let x = 1; in rec { inherit x; y = x; }",
            json!({"x": 1, "y": 1}),
        );
        check_err(
            "{ inherit (1) a; }.a",
            "value is an integer while a set was expected",
        );
    }

    #[test]
    fn functions_with_patterns_defaults_and_at() {
        check_eval(
            "({ a, b ? a + 1, ... }@s: [ a b (builtins.attrNames s) ]) { a = 1; c = 2; }",
            json!([1, 2, ["a", "c"]]),
        );
        check_eval("(a: b: a - b) 5 3", json!(2));
        check_err("({ a }: a) { }", "called without required argument 'a'");
        check_err(
            "({ a }: a) { a = 1; b = 2; }",
            "called with unexpected argument 'b'",
        );
        check_err(
            "1 2",
            "attempt to call something which is not a function but an integer",
        );
        check_eval("{ __functor = self: x: x + self.n; n = 1; } 2", json!(3));
    }

    #[test]
    fn a_top_level_function_with_defaults_is_called() {
        check_eval("{ x ? 1, ... }: { inherit x; }", json!({"x": 1}));
        check_err("{ x }: x", "argument without a value ('x')");
        check_err("x: x", "cannot convert a function to JSON");
    }

    #[test]
    fn strings_interpolation_and_indented_strings() {
        check_eval("let n = \"w\"; in \"a${n}b${\"c\"}\"", json!("awbc"));
        check_eval(
            "''\n  a\n    b\n  c ''${x} '''\n''",
            json!("a\n  b\nc ${x} ''\n"),
        );
        check_eval("\"\\n\\t\\\\\\\"\\${x}\"", json!("\n\t\\\"${x}"));
        check_err("\"${1}\"", "cannot coerce an integer to a string");
        check_eval(
            "\"${{ outPath = \"o\"; }}${{ __toString = s: \"t\"; }}\"",
            json!("ot"),
        );
    }

    #[test]
    fn to_string_follows_nix() {
        check_eval(
            "map toString [ 1 1.5 null true false \"s\" [ 1 [ ] 2 ] [ [ ] 1 ] [ 1 [ ] ] ]",
            json!(["1", "1.500000", "", "1", "", "s", "1 2", "1", "1 "]),
        );
    }

    #[test]
    fn numbers_keep_nix_int_and_float_types() {
        check_eval(
            "[ (7 / 2) (7 / 2.0) (1 + 1.0) 3.0 0.1 (1 / 3.0) 1.0e20 ]",
            json!([3, 3.5, 2, 3, 0.1, 0.333333, 1e20]),
        );
        check_eval(
            "[ (-1) (- 2.5) (2 * 3) (-9223372036854775807 - 1) ]",
            json!([-1, -2.5, 6, i64::MIN]),
        );
        check_err("1 / 0", "division by zero");
        check_err("1 + \"a\"", "cannot add a string to an integer");
    }

    #[test]
    fn integer_overflow_is_an_error_as_in_nix() {
        let msg = check_err(
            "{\n  x = 9223372036854775807 + 1;\n}",
            "integer overflow in adding 9223372036854775807 + 1",
        );
        assert!(msg.starts_with("input.nix:2:7:"), "{msg}");
        let min = "(-9223372036854775807 - 1)";
        for (src, wanted) in [
            (
                format!("{min} - 1"),
                "integer overflow in subtracting -9223372036854775808 - 1",
            ),
            (
                format!("- {min}"),
                "integer overflow in subtracting 0 - -9223372036854775808",
            ),
            (
                "4611686018427387904 * 2".to_owned(),
                "integer overflow in multiplying 4611686018427387904 * 2",
            ),
            (
                format!("{min} / (-1)"),
                "integer overflow in dividing -9223372036854775808 / -1",
            ),
            (
                "builtins.add 9223372036854775807 1".to_owned(),
                "integer overflow in adding",
            ),
            (
                "builtins.mul 9223372036854775807 2".to_owned(),
                "integer overflow in multiplying",
            ),
            (
                "builtins.sub (-2) 9223372036854775807".to_owned(),
                "integer overflow in subtracting",
            ),
            (
                format!("builtins.div {min} (-1)"),
                "integer overflow in dividing",
            ),
        ] {
            check_err(&src, wanted);
        }
        // Floats do not overflow into errors.
        check_eval("9223372036854775807 + 1.0 > 0", json!(true));
    }

    #[test]
    fn operators() {
        check_eval("[ ([1] ++ [2]) ({a = 1; b = 1;} // {a = 2;}) (1 < 2) (\"b\" > \"a\") (2 >= 2) (1 <= 0) ]", json!([[1, 2], {"a": 2, "b": 1}, true, true, true, false]));
        check_eval(
            "[ (true && false) (false || true) (false -> throw \"lazy\") (!false) ]",
            json!([false, true, true, true]),
        );
        check_eval("[ (1 == 1.0) ([ 1 { a = [ 2 ]; } ] == [ 1 { a = [ 2 ]; } ]) ((x: x) == (x: x)) (null != 1) ]", json!([true, true, false, true]));
        check_eval(
            "let a = { x = a; }; f = x: x; l = [ f ]; in [ (a == a) (f == f) (l == l) ([ f ] == [ f ]) ({ g = f; } == { g = f; }) ]",
            json!([true, false, true, true, true]),
        );
        check_eval(
            "[ ({ a.b = 1; } ? a.b) ({ } ? a.b) (1 ? a) ]",
            json!([true, false, false]),
        );
        check_eval(
            "[ ({ a = 1; }.b or 2) ({ a = 1; }.a or 2) ((1).a or 3) ]",
            json!([2, 1, 3]),
        );
        check_err("{ a = 1; }.b", "attribute 'b' missing");
        check_err(
            "if 1 then 2 else 3",
            "value is an integer while a Boolean was expected",
        );
        check_err("1 ++ [ ]", "value is an integer while a list was expected");
        check_err("1 < \"a\"", "cannot compare an integer with a string");
    }

    #[test]
    fn try_eval_catches_throw_and_assert_only() {
        check_eval(
            "let t = builtins.tryEval (throw \"x\"); in [ t (builtins.tryEval 1) t.success ]",
            json!([{"success": false, "value": false}, {"success": true, "value": 1}, false]),
        );
        check_eval("(builtins.tryEval (assert false; 1)).success", json!(false));
        check_err("builtins.tryEval ({ }.a)", "attribute 'a' missing");
        // A thunk that failed inside tryEval fails again, rather than looking recursive.
        check_err(
            "let x = throw \"boom\"; in builtins.seq (builtins.tryEval x) x",
            "boom",
        );
    }

    #[test]
    fn assert_failure_names_the_condition() {
        check_eval("assert 1 == 1; 2", json!(2));
        let msg = check_err("assert 1 == 2; 2", "assertion '1 == 2' failed");
        assert!(msg.starts_with("input.nix:1:1:"), "{msg}");
    }

    #[test]
    fn paths_are_absolute_and_canonical() {
        let dir = std::env::temp_dir();
        let got = evaluate_source("map toString [ ./a/../b/. (./x + \"/y\") ./. ]", &dir).unwrap();
        let base = crate::rules::lower::canon_path(&dir.to_string_lossy());
        let base = base.to_string_lossy();
        assert_eq!(
            got,
            json!([format!("{base}/b"), format!("{base}/x/y"), base])
        );
        check_eval("builtins.typeOf ./.", json!("path"));
    }

    #[test]
    fn paths_in_output_and_interpolation_become_store_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("foo"), "hi\n").unwrap();
        let store = "/nix/store/6mlv4zpsh5r2q4nb94lpkma95g744zvi-foo";
        let got = evaluate_source("[ ./foo \"${./foo}\" (\"\" + ./foo) ]", dir.path()).unwrap();
        assert_eq!(got, json!([store, store, store]));
        let msg = evaluate_source("{ a = ./missing; }", dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("getting status of '"), "{msg}");
        assert!(msg.contains("missing': No such file or directory"), "{msg}");
    }

    #[test]
    fn unsupported_constructs_are_named_with_their_location() {
        let msg = check_err(
            "{\n  a = <nixpkgs>;\n}",
            "the search path <nixpkgs> is unsupported in ragenix's evaluator",
        );
        assert!(msg.starts_with("input.nix:2:7:"), "{msg}");
        let msg = check_err(
            "let x = 1; in\n  builtins.fetchGit { }",
            "builtins.fetchGit is unsupported in ragenix's evaluator",
        );
        assert!(msg.starts_with("input.nix:2:3:"), "{msg}");
        check_err("1 |> (x: x)", "unsupported in ragenix's evaluator");
    }

    #[test]
    fn syntax_errors_are_located_with_a_snippet() {
        let msg = check_err(
            "{\n  a = 1\n  b = 2;\n}",
            "syntax error, unexpected '=', expecting ';'",
        );
        assert!(msg.starts_with("input.nix:3:5: error:"), "{msg}");
        assert!(msg.contains("3 │   b = 2;"), "no snippet in:\n{msg}");
        assert!(!msg.contains('\u{1b}'), "colours in:\n{msg}");
        check_err("{", "unexpected end of file");
    }
}
