//! Lowering: rnix's syntax tree into the evaluator's expression tree. Does what Nix's own parser
//! does beyond syntax: merges nested attribute paths, rejects duplicate attributes, resolves
//! variables statically (unknown names outside `with` are errors even in unused code).
//! The forms rules files are made of are read from rnix's green tree, offsets counted on the way
//! down (rowan's red cursors cost one allocation per node visited); the rest through rnix's
//! typed AST, in a red tree rooted at the node.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rnix::ast::{self, AstToken, HasEntry, InterpolPart};
use rnix::SyntaxKind::{self, *};
use rowan::ast::AstNode;
use rowan::{GreenNodeData, GreenTokenData, Language as _, NodeOrToken};

use super::diag::{EvalError, Pos};

pub(crate) type ExprRef = Rc<Expr>;

#[derive(Debug)]
pub(crate) enum Expr {
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Path(Rc<Path>),
    /// A path with interpolations: parts concatenated, then resolved against `dir`.
    PathInterp {
        dir: Rc<Path>,
        parts: Box<[Part]>,
        pos: Pos,
    },
    /// `<nixpkgs>`: needs NIX_PATH, which we do not have.
    Search(Rc<str>, Pos),
    Interp(Box<[Part]>, Pos),
    Var {
        depth: u32,
        slot: u32,
        pos: Pos,
    },
    WithVar(Rc<str>, Pos),
    Select {
        expr: ExprRef,
        path: Box<[AttrKey]>,
        default: Option<ExprRef>,
        pos: Pos,
    },
    HasAttr {
        expr: ExprRef,
        path: Box<[AttrKey]>,
    },
    Attrs(Rc<AttrsDef>),
    Let(Rc<AttrsDef>, ExprRef),
    List(Vec<ExprRef>),
    Lambda(Rc<LambdaDef>),
    Apply(ExprRef, ExprRef, Pos),
    If(ExprRef, ExprRef, ExprRef, Pos),
    Assert(ExprRef, ExprRef, Rc<str>, Pos),
    With(ExprRef, ExprRef),
    Bin(BinOp, ExprRef, ExprRef, Pos),
    Not(ExprRef, Pos),
    Neg(ExprRef, Pos),
    CurPos(Pos),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Concat,
    Update,
    Add,
    Sub,
    Mul,
    Div,
    And,
    Or,
    Impl,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
pub(crate) enum Part {
    Lit(Rc<str>),
    Expr(ExprRef, Pos),
}

#[derive(Debug)]
pub(crate) enum AttrKey {
    Static(Rc<str>),
    Dynamic(ExprRef, Pos),
}

/// An attribute set, `rec` set or `let` block. For `rec`/`let`, the static bindings are the
/// slots of a new scope, in order.
#[derive(Debug)]
pub(crate) struct AttrsDef {
    pub rec: bool,
    pub statics: Box<[Binding]>,
    pub dynamics: Box<[DynBinding]>,
}

#[derive(Debug)]
pub(crate) struct Binding {
    pub name: Rc<str>,
    pub value: ExprRef,
    /// `inherit x;` in a `rec` set or `let`: evaluated in the enclosing scope.
    pub outer: bool,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct DynBinding {
    pub name: ExprRef,
    pub value: ExprRef,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct LambdaDef {
    pub param: Param,
    pub body: ExprRef,
    pub pos: Pos,
}

/// Slots of a function's scope: the plain argument, or each formal then the `@` name.
#[derive(Debug)]
pub(crate) enum Param {
    Ident,
    Pattern {
        formals: Vec<(Rc<str>, Option<ExprRef>)>,
        ellipsis: bool,
        bind: bool,
    },
}

/// Identifier and attribute names, each stored once however often it occurs (a rules file
/// repeats `publicKeys`, its key names and its variables thousands of times), and shared by
/// every file of one evaluation.
#[derive(Default)]
pub(crate) struct Names(HashSet<Rc<str>>);

impl Names {
    pub fn get(&mut self, name: &str) -> Rc<str> {
        if let Some(shared) = self.0.get(name) {
            return shared.clone();
        }
        let shared: Rc<str> = Rc::from(name);
        self.0.insert(shared.clone());
        shared
    }
}

/// Depth of nested syntax we lower; rnix stops parsing well before this.
const MAX_LOWER_DEPTH: u32 = 4096;

enum Scope {
    Static(HashMap<Rc<str>, u32>),
    With,
}

pub(crate) struct Lowerer<'a> {
    file: u32,
    dir: Rc<Path>,
    scopes: Vec<Scope>,
    depth: u32,
    home: Option<&'a Path>,
    names: &'a mut Names,
    /// Offset in the file of the red tree being walked: red trees are made only for the rare
    /// nodes the green walk leaves to rnix's typed AST, each rooted at that node.
    base: u32,
}

/// A node to lower: most are read straight from rnix's green tree (with their offset in the
/// file), which makes no rowan cursor; the rest go through rnix's typed AST, rooted at the node
/// (whose offset in the file is the second field).
#[derive(Clone)]
enum Syn<'g> {
    Green(&'g GreenNodeData, u32),
    Red(ast::Expr, u32),
}

/// One step of an attribute path: a name known before evaluation, or an attribute to lower
/// (from a red tree rooted at the given offset).
#[derive(Clone)]
enum Key {
    Static(Rc<str>),
    Dynamic(ast::Attr, u32),
}

/// A set's bindings before lowering, so that `a.b = …; a.c = …;` can merge as in Nix.
struct Tree<'g> {
    rec: bool,
    /// Index of each name in `entries`, once there are too many to search (most sets in a
    /// rules file have one or two attributes, and there are thousands of them).
    names: Option<HashMap<Rc<str>, usize>>,
    entries: Vec<(Rc<str>, Entry<'g>)>,
    dynamics: Vec<(ast::Attr, u32, TreeValue<'g>, Pos)>,
}

enum Entry<'g> {
    Value(Syn<'g>, Pos),
    Nested(Tree<'g>, Pos),
    Inherit(Option<Syn<'g>>, Pos),
}

enum TreeValue<'g> {
    Expr(Syn<'g>),
    Nested(Tree<'g>),
}

impl<'a> Lowerer<'a> {
    pub fn new(
        file: u32,
        dir: &Path,
        globals: HashMap<Rc<str>, u32>,
        home: Option<&'a Path>,
        names: &'a mut Names,
    ) -> Self {
        let base = globals;
        Lowerer {
            file,
            dir: Rc::from(dir),
            scopes: vec![Scope::Static(base)],
            depth: 0,
            home,
            names,
            base: 0,
        }
    }

    fn pos(&self, node: &impl AstNode) -> Pos {
        Pos {
            file: self.file,
            offset: self.base + u32::from(node.syntax().text_range().start()),
        }
    }

    fn len(node: &impl AstNode) -> u32 {
        node.syntax().text_range().len().into()
    }

    pub fn lower(&mut self, expr: Option<ast::Expr>, parent: Pos) -> Result<ExprRef, EvalError> {
        let Some(expr) = expr else {
            return Err(EvalError::syntax("missing expression", parent, 1));
        };
        self.depth += 1;
        if self.depth > MAX_LOWER_DEPTH {
            return Err(EvalError::unsupported(
                "an expression nested this deeply",
                Some(self.pos(&expr)),
            ));
        }
        let out = self.lower_inner(expr);
        self.depth -= 1;
        out.map(Rc::new)
    }

    fn lower_inner(&mut self, expr: ast::Expr) -> Result<Expr, EvalError> {
        let pos = self.pos(&expr);
        Ok(match expr {
            ast::Expr::Paren(p) => return self.lower(p.expr(), pos).map(unwrap_rc),
            ast::Expr::Root(r) => return self.lower(r.expr(), pos).map(unwrap_rc),
            ast::Expr::Literal(lit) => match lit.kind() {
                ast::LiteralKind::Integer(i) => Expr::Int(i.value().map_err(|_| {
                    EvalError::eval(
                        format!("invalid integer '{}'", i.syntax().text()),
                        Some(pos),
                    )
                })?),
                ast::LiteralKind::Float(f) => Expr::Float(f.value().map_err(|_| {
                    EvalError::eval(format!("invalid float '{}'", f.syntax().text()), Some(pos))
                })?),
                ast::LiteralKind::Uri(u) => Expr::Str(Rc::from(u.syntax().text())),
            },
            ast::Expr::Str(s) => self.lower_str(&s, pos)?,
            ast::Expr::PathAbs(p) => self.lower_path(p.parts(), pos)?,
            ast::Expr::PathRel(p) => self.lower_path(p.parts(), pos)?,
            ast::Expr::PathHome(p) => self.lower_path(p.parts(), pos)?,
            ast::Expr::PathSearch(p) => {
                let text = p.content().map(|c| c.text().to_owned()).unwrap_or_default();
                Expr::Search(Rc::from(text), pos)
            }
            ast::Expr::Ident(id) => {
                let name = ident_name(&id, self.names);
                self.lower_var(&name, pos)?
            }
            ast::Expr::CurPos(_) => Expr::CurPos(pos),
            ast::Expr::List(l) => {
                let mut items = Vec::new();
                for item in l.items() {
                    items.push(self.lower(Some(item), pos)?);
                }
                Expr::List(items)
            }
            ast::Expr::Select(s) => {
                let expr = self.lower(s.expr(), pos)?;
                let path = self.lower_attrpath(s.attrpath(), pos)?;
                let default = match s.default_expr() {
                    Some(d) => Some(self.lower(Some(d), pos)?),
                    None => None,
                };
                Expr::Select {
                    expr,
                    path: path.into(),
                    default,
                    pos,
                }
            }
            ast::Expr::HasAttr(h) => {
                let expr = self.lower(h.expr(), pos)?;
                let path = self.lower_attrpath(h.attrpath(), pos)?;
                Expr::HasAttr {
                    expr,
                    path: path.into(),
                }
            }
            ast::Expr::Apply(a) => {
                let f = self.lower(a.lambda(), pos)?;
                let arg = self.lower(a.argument(), pos)?;
                Expr::Apply(f, arg, pos)
            }
            ast::Expr::IfElse(i) => Expr::If(
                self.lower(i.condition(), pos)?,
                self.lower(i.body(), pos)?,
                self.lower(i.else_body(), pos)?,
                pos,
            ),
            ast::Expr::Assert(a) => {
                let text = a
                    .condition()
                    .map(|c| c.syntax().text().to_string())
                    .unwrap_or_default();
                Expr::Assert(
                    self.lower(a.condition(), pos)?,
                    self.lower(a.body(), pos)?,
                    Rc::from(text),
                    pos,
                )
            }
            ast::Expr::With(w) => {
                let ns = self.lower(w.namespace(), pos)?;
                self.scopes.push(Scope::With);
                let body = self.lower(w.body(), pos);
                self.scopes.pop();
                Expr::With(ns, body?)
            }
            ast::Expr::UnaryOp(u) => {
                let e = self.lower(u.expr(), pos)?;
                match u.operator() {
                    Some(ast::UnaryOpKind::Invert) => Expr::Not(e, pos),
                    Some(ast::UnaryOpKind::Negate) => Expr::Neg(e, pos),
                    None => return Err(EvalError::syntax("missing operator", pos, 1)),
                }
            }
            ast::Expr::BinOp(b) => {
                let op = bin_op(b.operator(), pos)?;
                Expr::Bin(
                    op,
                    self.lower(b.lhs(), pos)?,
                    self.lower(b.rhs(), pos)?,
                    pos,
                )
            }
            ast::Expr::AttrSet(set) => {
                let tree = self.collect_tree(&set, set.rec_token().is_some(), false)?;
                Expr::Attrs(Rc::new(self.lower_tree(tree, pos)?))
            }
            ast::Expr::LetIn(l) => {
                let tree = self.collect_tree(&l, true, true)?;
                let names = tree.scope_names();
                self.scopes.push(Scope::Static(names));
                let out = (|| {
                    let def = self.lower_tree_in_scope(tree)?;
                    let body = self.lower(l.body(), pos)?;
                    Ok(Expr::Let(Rc::new(def), body))
                })();
                self.scopes.pop();
                out?
            }
            ast::Expr::LegacyLet(_) => {
                return Err(EvalError::unsupported(
                    "the legacy `let { … }` syntax",
                    Some(pos),
                ))
            }
            ast::Expr::Lambda(l) => self.lower_lambda(&l, pos)?,
            ast::Expr::Error(e) => {
                return Err(EvalError::syntax("syntax error", pos, Self::len(&e)));
            }
        })
    }

    fn at(&self, offset: u32) -> Pos {
        Pos {
            file: self.file,
            offset,
        }
    }

    /// Lowers a whole file from its green tree.
    pub fn lower_file(&mut self, root: &GreenNodeData) -> Result<ExprRef, EvalError> {
        self.lower_green(Some((root, 0)), self.at(0))
    }

    fn lower_syn(&mut self, syn: Syn<'_>, parent: Pos) -> Result<ExprRef, EvalError> {
        match syn {
            Syn::Green(node, offset) => self.lower_green(Some((node, offset)), parent),
            Syn::Red(expr, base) => {
                let saved = std::mem::replace(&mut self.base, base);
                let out = self.lower(Some(expr), parent);
                self.base = saved;
                out
            }
        }
    }

    /// [`Self::lower`] on the green tree.
    fn lower_green(
        &mut self,
        node: Option<(&GreenNodeData, u32)>,
        parent: Pos,
    ) -> Result<ExprRef, EvalError> {
        let Some((node, offset)) = node else {
            return Err(EvalError::syntax("missing expression", parent, 1));
        };
        self.depth += 1;
        if self.depth > MAX_LOWER_DEPTH {
            return Err(EvalError::unsupported(
                "an expression nested this deeply",
                Some(self.at(offset)),
            ));
        }
        let out = self.lower_green_inner(node, offset);
        self.depth -= 1;
        out.map(Rc::new)
    }

    /// The forms a rules file is mostly made of; anything else (and any of these in a shape
    /// the green walk does not read, like a string with escapes) goes through the typed AST.
    fn lower_green_inner(&mut self, node: &GreenNodeData, offset: u32) -> Result<Expr, EvalError> {
        let pos = self.at(offset);
        Ok(match kind(node) {
            NODE_ROOT | NODE_PAREN => {
                return self
                    .lower_green(nth_expr(node, offset, 0), pos)
                    .map(unwrap_rc)
            }
            NODE_IDENT => match single_token(node) {
                Some(token) => {
                    let name = self.names.get(token.text());
                    self.lower_var(&name, pos)?
                }
                None => return self.lower_red(node, offset),
            },
            NODE_STRING => match green_plain_literal(node, self.names) {
                Some(text) => Expr::Str(text),
                None => return self.lower_red(node, offset),
            },
            NODE_LIST => {
                let mut items = Vec::new();
                for (item, off) in green_nodes(node, offset) {
                    if is_expr(kind(item)) {
                        items.push(self.lower_green(Some((item, off)), pos)?);
                    }
                }
                Expr::List(items)
            }
            NODE_SELECT => {
                let path = green_nodes(node, offset).find(|(n, _)| kind(n) == NODE_ATTRPATH);
                let mut keys = Vec::new();
                if let Some((path, off)) = path {
                    for (attr, _) in green_nodes(path, off) {
                        match green_static_name(attr, self.names) {
                            Some(name) => keys.push(AttrKey::Static(name)),
                            None => return self.lower_red(node, offset),
                        }
                    }
                }
                let expr = self.lower_green(nth_expr(node, offset, 0), pos)?;
                if path.is_none() {
                    return Err(EvalError::syntax("missing attribute path", pos, 1));
                }
                let default = match nth_expr(node, offset, 1) {
                    Some(d) => Some(self.lower_green(Some(d), pos)?),
                    None => None,
                };
                Expr::Select {
                    expr,
                    path: keys.into(),
                    default,
                    pos,
                }
            }
            NODE_APPLY => {
                let f = self.lower_green(nth_expr(node, offset, 0), pos)?;
                let arg = self.lower_green(nth_expr(node, offset, 1), pos)?;
                Expr::Apply(f, arg, pos)
            }
            NODE_BIN_OP => {
                let op = node.children().find_map(|c| {
                    let token = c.into_token()?;
                    ast::BinOpKind::from_kind(rnix::NixLanguage::kind_from_raw(token.kind()))
                });
                let op = bin_op(op, pos)?;
                Expr::Bin(
                    op,
                    self.lower_green(nth_expr(node, offset, 0), pos)?,
                    self.lower_green(nth_expr(node, offset, 1), pos)?,
                    pos,
                )
            }
            NODE_ATTR_SET => {
                let tree = self.collect_green(node, offset, has_rec(node), false)?;
                Expr::Attrs(Rc::new(self.lower_tree(tree, pos)?))
            }
            NODE_LET_IN => {
                let tree = self.collect_green(node, offset, true, true)?;
                let names = tree.scope_names();
                self.scopes.push(Scope::Static(names));
                let out = (|| {
                    let def = self.lower_tree_in_scope(tree)?;
                    let body = self.lower_green(nth_expr(node, offset, 0), pos)?;
                    Ok(Expr::Let(Rc::new(def), body))
                })();
                self.scopes.pop();
                out?
            }
            _ => return self.lower_red(node, offset),
        })
    }

    /// Lowers `node` through rnix's typed AST, in a red tree rooted at it.
    fn lower_red(&mut self, node: &GreenNodeData, offset: u32) -> Result<Expr, EvalError> {
        let red = rnix::SyntaxNode::new_root(node.to_owned());
        let Some(expr) = ast::Expr::cast(red) else {
            unreachable!("only expressions are lowered")
        };
        let saved = std::mem::replace(&mut self.base, offset);
        let out = self.lower_inner(expr);
        self.base = saved;
        out
    }

    fn lower_var(&self, name: &str, pos: Pos) -> Result<Expr, EvalError> {
        let mut with = false;
        for (depth, scope) in self.scopes.iter().rev().enumerate() {
            match scope {
                Scope::Static(names) => {
                    if let Some(&slot) = names.get(name) {
                        return Ok(Expr::Var {
                            depth: depth as u32,
                            slot,
                            pos,
                        });
                    }
                }
                Scope::With => with = true,
            }
        }
        if with {
            Ok(Expr::WithVar(Rc::from(name), pos))
        } else {
            Err(EvalError::eval(
                format!("undefined variable '{name}'"),
                Some(pos),
            ))
        }
    }

    fn lower_str(&mut self, s: &ast::Str, pos: Pos) -> Result<Expr, EvalError> {
        if let Some(text) = plain_literal(s, self.names) {
            return Ok(Expr::Str(text));
        }
        let mut parts = Vec::new();
        for part in s.normalized_parts() {
            match part {
                InterpolPart::Literal(text) => parts.push(Part::Lit(Rc::from(text))),
                InterpolPart::Interpolation(i) => {
                    let ipos = self.pos(&i);
                    parts.push(Part::Expr(self.lower(i.expr(), ipos)?, ipos));
                }
            }
        }
        Ok(match parts.as_slice() {
            [] => Expr::Str(Rc::from("")),
            [Part::Lit(text)] => Expr::Str(text.clone()),
            _ => Expr::Interp(parts.into(), pos),
        })
    }

    fn lower_path(
        &mut self,
        raw: Vec<InterpolPart<ast::PathContent>>,
        pos: Pos,
    ) -> Result<Expr, EvalError> {
        let mut parts = Vec::new();
        for part in raw {
            match part {
                InterpolPart::Literal(text) => parts.push(Part::Lit(Rc::from(text.text()))),
                InterpolPart::Interpolation(i) => {
                    let ipos = self.pos(&i);
                    parts.push(Part::Expr(self.lower(i.expr(), ipos)?, ipos));
                }
            }
        }
        if let [Part::Lit(text)] = parts.as_slice() {
            return Ok(Expr::Path(Rc::from(self.resolve_path(text, pos)?)));
        }
        Ok(Expr::PathInterp {
            dir: self.dir.clone(),
            parts: parts.into(),
            pos,
        })
    }

    fn resolve_path(&self, text: &str, pos: Pos) -> Result<PathBuf, EvalError> {
        resolve_path_text(&self.dir, self.home, text).ok_or_else(|| {
            EvalError::eval("the home directory is unknown (HOME is not set)", Some(pos))
        })
    }

    fn lower_attrpath(
        &mut self,
        path: Option<ast::Attrpath>,
        pos: Pos,
    ) -> Result<Vec<AttrKey>, EvalError> {
        let Some(path) = path else {
            return Err(EvalError::syntax("missing attribute path", pos, 1));
        };
        let mut keys = Vec::new();
        for attr in path.attrs() {
            keys.push(self.lower_key(&attr)?);
        }
        Ok(keys)
    }

    fn lower_key(&mut self, attr: &ast::Attr) -> Result<AttrKey, EvalError> {
        if let Some(name) = static_name(attr, self.names) {
            return Ok(AttrKey::Static(name));
        }
        let pos = self.pos(attr);
        let expr = match attr {
            ast::Attr::Dynamic(d) => self.lower(d.expr(), pos)?,
            ast::Attr::Str(s) => Rc::new(self.lower_str(s, pos)?),
            ast::Attr::Ident(_) => unreachable!("identifiers are static"),
        };
        Ok(AttrKey::Dynamic(expr, pos))
    }

    fn lower_lambda(&mut self, l: &ast::Lambda, pos: Pos) -> Result<Expr, EvalError> {
        let Some(param) = l.param() else {
            return Err(EvalError::syntax("missing function argument", pos, 1));
        };
        match param {
            ast::Param::IdentParam(p) => {
                let name = match p.ident() {
                    Some(i) => ident_name(&i, self.names),
                    None => Rc::from(""),
                };
                self.scopes
                    .push(Scope::Static(HashMap::from_iter([(name, 0)])));
                let body = self.lower(l.body(), pos);
                self.scopes.pop();
                Ok(Expr::Lambda(Rc::new(LambdaDef {
                    param: Param::Ident,
                    body: body?,
                    pos,
                })))
            }
            ast::Param::Pattern(p) => {
                let mut names: HashMap<Rc<str>, u32> = HashMap::default();
                let mut order = Vec::new();
                for entry in p.pat_entries() {
                    let name = match entry.ident() {
                        Some(i) => ident_name(&i, self.names),
                        None => Rc::from(""),
                    };
                    if names.contains_key(&name) {
                        return Err(EvalError::eval(
                            format!("duplicate formal function argument '{name}'"),
                            Some(self.pos(&entry)),
                        ));
                    }
                    names.insert(name.clone(), order.len() as u32);
                    order.push((name, entry.default()));
                }
                let bind = p.pat_bind().and_then(|b| b.ident());
                let bind = bind.map(|i| ident_name(&i, self.names));
                if let Some(b) = &bind {
                    let b = b.clone();
                    if names.contains_key(&b) {
                        return Err(EvalError::eval(
                            format!("duplicate formal function argument '{b}'"),
                            Some(pos),
                        ));
                    }
                    names.insert(b, order.len() as u32);
                }
                self.scopes.push(Scope::Static(names));
                let out = (|| {
                    let mut formals = Vec::new();
                    for (name, default) in order {
                        let d = match default {
                            Some(d) => Some(self.lower(Some(d), pos)?),
                            None => None,
                        };
                        formals.push((name, d));
                    }
                    let body = self.lower(l.body(), pos)?;
                    Ok(Expr::Lambda(Rc::new(LambdaDef {
                        param: Param::Pattern {
                            formals,
                            ellipsis: p.ellipsis_token().is_some(),
                            bind: bind.is_some(),
                        },
                        body,
                        pos,
                    })))
                })();
                self.scopes.pop();
                out
            }
        }
    }

    /// Gathers a set's or let's bindings, merging attribute paths and rejecting duplicates
    /// exactly where Nix's parser does.
    fn collect_tree<'g>(
        &mut self,
        node: &impl HasEntry,
        rec: bool,
        is_let: bool,
    ) -> Result<Tree<'g>, EvalError> {
        let mut tree = Tree::new(rec);
        for entry in node.entries() {
            self.collect_entry(&mut tree, entry, is_let)?;
        }
        Ok(tree)
    }

    fn collect_entry<'g>(
        &mut self,
        tree: &mut Tree<'g>,
        entry: ast::Entry,
        is_let: bool,
    ) -> Result<(), EvalError> {
        match entry {
            ast::Entry::Inherit(inh) => {
                let from = inh
                    .from()
                    .and_then(|f| f.expr())
                    .map(|e| Syn::Red(e, self.base));
                for attr in inh.attrs() {
                    let apos = self.pos(&attr);
                    let Some(name) = static_name(&attr, self.names) else {
                        return Err(EvalError::eval(
                            "dynamic attributes not allowed in inherit",
                            Some(apos),
                        ));
                    };
                    if let Some(i) = tree.find(&name) {
                        return Err(dup_error(&name, apos, entry_pos(&tree.entries[i].1)));
                    }
                    tree.insert(name, Entry::Inherit(from.clone(), apos));
                }
            }
            ast::Entry::AttrpathValue(av) => {
                let Some(path) = av.attrpath() else {
                    return Err(EvalError::syntax(
                        "missing attribute path",
                        self.pos(&av),
                        1,
                    ));
                };
                let Some(value) = av.value() else {
                    return Err(EvalError::syntax("missing value", self.pos(&av), 1));
                };
                let ppos = self.pos(&path);
                let base = self.base;
                let keys: Vec<Key> = path
                    .attrs()
                    .map(|a| match static_name(&a, self.names) {
                        Some(name) => Key::Static(name),
                        None => Key::Dynamic(a, base),
                    })
                    .collect();
                if is_let && matches!(keys[0], Key::Dynamic(..)) {
                    return Err(EvalError::eval(
                        "dynamic attributes not allowed in let",
                        Some(ppos),
                    ));
                }
                self.add_attr(tree, &keys, Syn::Red(value, base), ppos)?;
            }
        }
        Ok(())
    }

    /// [`Self::collect_tree`] on the green tree: entries whose path is made of plain names are
    /// read there, any other entry through the typed AST.
    fn collect_green<'g>(
        &mut self,
        node: &'g GreenNodeData,
        offset: u32,
        rec: bool,
        is_let: bool,
    ) -> Result<Tree<'g>, EvalError> {
        let mut tree = Tree::new(rec);
        let mut keys = Vec::new();
        for (child, off) in green_nodes(node, offset) {
            match kind(child) {
                NODE_ATTRPATH_VALUE => {}
                NODE_INHERIT => {
                    self.red_entry(&mut tree, child, off, is_let)?;
                    continue;
                }
                _ => continue,
            }
            let path = green_nodes(child, off).find(|(n, _)| kind(n) == NODE_ATTRPATH);
            let value = green_nodes(child, off).find(|(n, _)| is_expr(kind(n)));
            let (Some((path, ppos)), Some(value)) = (path, value) else {
                self.red_entry(&mut tree, child, off, is_let)?;
                continue;
            };
            keys.clear();
            for (attr, _) in green_nodes(path, ppos) {
                match green_static_name(attr, self.names) {
                    Some(name) => keys.push(Key::Static(name)),
                    None => break,
                }
            }
            if keys.len() != green_nodes(path, ppos).count() || keys.is_empty() {
                self.red_entry(&mut tree, child, off, is_let)?;
                continue;
            }
            let pos = self.at(ppos);
            self.add_attr(&mut tree, &keys, Syn::Green(value.0, value.1), pos)?;
        }
        Ok(tree)
    }

    /// One entry of a green set, through the typed AST.
    fn red_entry<'g>(
        &mut self,
        tree: &mut Tree<'g>,
        node: &GreenNodeData,
        offset: u32,
        is_let: bool,
    ) -> Result<(), EvalError> {
        let red = rnix::SyntaxNode::new_root(node.to_owned());
        let Some(entry) = ast::Entry::cast(red) else {
            unreachable!("only entries are passed")
        };
        let saved = std::mem::replace(&mut self.base, offset);
        let out = self.collect_entry(tree, entry, is_let);
        self.base = saved;
        out
    }

    fn add_attr<'g>(
        &mut self,
        tree: &mut Tree<'g>,
        attrs: &[Key],
        value: Syn<'g>,
        pos: Pos,
    ) -> Result<(), EvalError> {
        let shown = || show_path(attrs);
        let mut cur = tree;
        for (i, attr) in attrs.iter().enumerate() {
            let last = i + 1 == attrs.len();
            let name = match attr {
                Key::Static(name) => name.clone(),
                Key::Dynamic(attr, base) => {
                    let rest = if last {
                        TreeValue::Expr(value)
                    } else {
                        let mut nested = Tree::new(false);
                        self.add_attr(&mut nested, &attrs[i + 1..], value, pos)?;
                        TreeValue::Nested(nested)
                    };
                    cur.dynamics.push((attr.clone(), *base, rest, pos));
                    return Ok(());
                }
            };
            if last {
                let new = self.value_entry(value, pos)?;
                match cur.find(&name) {
                    None => cur.insert(name, new),
                    Some(j) => match (&mut cur.entries[j].1, new) {
                        (Entry::Nested(existing, _), Entry::Nested(added, _)) => {
                            for (n, e) in added.entries {
                                if let Some(k) = existing.find(&n) {
                                    return Err(dup_error(
                                        &n,
                                        entry_pos(&existing.entries[k].1),
                                        entry_pos(&e),
                                    ));
                                }
                                existing.insert(n, e);
                            }
                            existing.dynamics.extend(added.dynamics);
                        }
                        (old, _) => return Err(dup_error(&shown(), pos, entry_pos(old))),
                    },
                }
                return Ok(());
            }
            let j = match cur.find(&name) {
                Some(j) => {
                    if !matches!(cur.entries[j].1, Entry::Nested(..)) {
                        return Err(dup_error(&shown(), pos, entry_pos(&cur.entries[j].1)));
                    }
                    j
                }
                None => {
                    cur.insert(name, Entry::Nested(Tree::new(false), pos));
                    cur.entries.len() - 1
                }
            };
            let Entry::Nested(next, _) = &mut cur.entries[j].1 else {
                unreachable!("checked above")
            };
            cur = next;
        }
        Ok(())
    }

    /// A bound value; a literal attribute set stays open for merging with later paths.
    fn value_entry<'g>(&mut self, value: Syn<'g>, pos: Pos) -> Result<Entry<'g>, EvalError> {
        match &value {
            Syn::Green(node, offset) => {
                let (mut inner, mut off) = (*node, *offset);
                while kind(inner) == NODE_PAREN {
                    match nth_expr(inner, off, 0) {
                        Some((n, o)) => (inner, off) = (n, o),
                        None => break,
                    }
                }
                if kind(inner) == NODE_ATTR_SET {
                    let tree = self.collect_green(inner, off, has_rec(inner), false)?;
                    return Ok(Entry::Nested(tree, pos));
                }
            }
            Syn::Red(red, base) => {
                let mut inner = red.clone();
                while let ast::Expr::Paren(p) = &inner {
                    match p.expr() {
                        Some(e) => inner = e,
                        None => break,
                    }
                }
                if let ast::Expr::AttrSet(set) = &inner {
                    let saved = std::mem::replace(&mut self.base, *base);
                    let tree = self.collect_tree(set, set.rec_token().is_some(), false);
                    self.base = saved;
                    return Ok(Entry::Nested(tree?, pos));
                }
            }
        }
        Ok(Entry::Value(value, pos))
    }

    /// Lowers a set: for `rec`, in a new scope of its static names.
    fn lower_tree(&mut self, tree: Tree<'_>, pos: Pos) -> Result<AttrsDef, EvalError> {
        self.depth += 1;
        if self.depth > MAX_LOWER_DEPTH {
            return Err(EvalError::unsupported(
                "an attribute path nested this deeply",
                Some(pos),
            ));
        }
        let out = if tree.rec {
            self.scopes.push(Scope::Static(tree.scope_names()));
            let out = self.lower_tree_in_scope(tree);
            self.scopes.pop();
            out
        } else {
            self.lower_tree_in_scope(tree)
        };
        self.depth -= 1;
        out
    }

    /// Lowers bindings, assuming the `rec`/`let` scope (if any) is already pushed.
    fn lower_tree_in_scope(&mut self, tree: Tree<'_>) -> Result<AttrsDef, EvalError> {
        let rec = tree.rec;
        let mut statics = Vec::with_capacity(tree.entries.len());
        for (name, entry) in tree.entries {
            let (value, outer, pos) = match entry {
                Entry::Value(e, pos) => (self.lower_syn(e, pos)?, false, pos),
                Entry::Nested(t, pos) => (
                    Rc::new(Expr::Attrs(Rc::new(self.lower_tree(t, pos)?))),
                    false,
                    pos,
                ),
                Entry::Inherit(None, pos) => {
                    // `inherit x;` refers to the enclosing scope, not the set being defined.
                    let value = if rec {
                        let saved = self.scopes.pop();
                        let v = self.lower_var(&name, pos);
                        self.scopes.extend(saved);
                        v?
                    } else {
                        self.lower_var(&name, pos)?
                    };
                    (Rc::new(value), rec, pos)
                }
                Entry::Inherit(Some(from), pos) => {
                    let expr = self.lower_syn(from, pos)?;
                    let select = Expr::Select {
                        expr,
                        path: Box::new([AttrKey::Static(name.clone())]),
                        default: None,
                        pos,
                    };
                    (Rc::new(select), false, pos)
                }
            };
            statics.push(Binding {
                name,
                value,
                outer,
                pos,
            });
        }
        let mut dynamics = Vec::new();
        for (attr, base, value, pos) in tree.dynamics {
            let saved = std::mem::replace(&mut self.base, base);
            let key = self.lower_key(&attr);
            self.base = saved;
            let name = match key? {
                AttrKey::Dynamic(e, _) => e,
                AttrKey::Static(s) => Rc::new(Expr::Str(s)),
            };
            let value = match value {
                TreeValue::Expr(e) => self.lower_syn(e, pos)?,
                TreeValue::Nested(t) => Rc::new(Expr::Attrs(Rc::new(self.lower_tree(t, pos)?))),
            };
            dynamics.push(DynBinding { name, value, pos });
        }
        Ok(AttrsDef {
            rec,
            statics: statics.into(),
            dynamics: dynamics.into(),
        })
    }
}

impl<'g> Tree<'g> {
    fn new(rec: bool) -> Self {
        Tree {
            rec,
            names: None,
            entries: Vec::new(),
            dynamics: Vec::new(),
        }
    }

    const SEARCHED: usize = 8;

    fn insert(&mut self, name: Rc<str>, entry: Entry<'g>) {
        match &mut self.names {
            Some(names) => {
                names.insert(name.clone(), self.entries.len());
            }
            None if self.entries.len() == Self::SEARCHED => {
                let mut names: HashMap<Rc<str>, usize> = self
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| (n.clone(), i))
                    .collect();
                names.insert(name.clone(), self.entries.len());
                self.names = Some(names);
            }
            None => {}
        }
        self.entries.push((name, entry));
    }

    /// Where `name` is in `entries`.
    fn find(&self, name: &str) -> Option<usize> {
        match &self.names {
            Some(names) => names.get(name).copied(),
            None => self.entries.iter().position(|(n, _)| &**n == name),
        }
    }

    fn scope_names(&self) -> HashMap<Rc<str>, u32> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i as u32))
            .collect()
    }
}

fn entry_pos(e: &Entry) -> Pos {
    match e {
        Entry::Value(_, p) | Entry::Nested(_, p) | Entry::Inherit(_, p) => *p,
    }
}

fn dup_error(name: &str, pos: Pos, previous: Pos) -> EvalError {
    EvalError {
        previous: Some(previous),
        ..EvalError::eval(format!("attribute '{name}' already defined"), Some(pos))
    }
}

fn unwrap_rc(e: ExprRef) -> Expr {
    Rc::try_unwrap(e).unwrap_or_else(|_| unreachable!("freshly lowered expressions are unshared"))
}

/// An identifier's name. Its node holds the one token (`x`, or the keyword `or` used as a name);
/// reading that token from the green tree avoids rowan's cursor allocations and text rendering,
/// which dominated lowering large files.
fn ident_name(id: &ast::Ident, names: &mut Names) -> Rc<str> {
    let node = id.syntax();
    match single_token(node.green()) {
        Some(token) => names.get(token.text()),
        None => names.get(&node.text().to_string()),
    }
}

/// The value of a `"…"` string made of one literal without escapes (most attribute names);
/// `None` for anything else, which goes through rnix's full unescaping.
fn plain_literal(s: &ast::Str, names: &mut Names) -> Option<Rc<str>> {
    green_plain_literal(s.syntax().green(), names)
}

fn green_plain_literal(node: &GreenNodeData, names: &mut Names) -> Option<Rc<str>> {
    let token_kind = |t: &GreenTokenData| rnix::NixLanguage::kind_from_raw(t.kind());
    let mut children = node.children();
    let start = children.next()?.into_token()?;
    if token_kind(start) != TOKEN_STRING_START || start.text() != "\"" {
        return None;
    }
    let next = children.next()?.into_token()?;
    let (text, end) = match token_kind(next) {
        TOKEN_STRING_END => (names.get(""), next),
        TOKEN_STRING_CONTENT if !next.text().contains(['\\', '"']) => {
            (names.get(next.text()), children.next()?.into_token()?)
        }
        _ => return None,
    };
    (token_kind(end) == TOKEN_STRING_END && children.next().is_none()).then_some(text)
}

/// An attribute name read from the green tree: an identifier or a plain string; `None` for
/// anything the typed AST must read.
fn green_static_name(node: &GreenNodeData, names: &mut Names) -> Option<Rc<str>> {
    match kind(node) {
        NODE_IDENT => Some(names.get(single_token(node)?.text())),
        NODE_STRING => green_plain_literal(node, names),
        _ => None,
    }
}

fn kind(node: &GreenNodeData) -> SyntaxKind {
    rnix::NixLanguage::kind_from_raw(node.kind())
}

/// Node kinds that are expressions, as rnix's `ast::Expr` casts them.
fn is_expr(kind: SyntaxKind) -> bool {
    matches!(
        kind,
        NODE_APPLY
            | NODE_ASSERT
            | NODE_ERROR
            | NODE_IF_ELSE
            | NODE_SELECT
            | NODE_STRING
            | NODE_PATH_ABS
            | NODE_PATH_REL
            | NODE_PATH_HOME
            | NODE_PATH_SEARCH
            | NODE_LITERAL
            | NODE_LAMBDA
            | NODE_LEGACY_LET
            | NODE_LET_IN
            | NODE_LIST
            | NODE_BIN_OP
            | NODE_PAREN
            | NODE_ROOT
            | NODE_ATTR_SET
            | NODE_UNARY_OP
            | NODE_IDENT
            | NODE_WITH
            | NODE_HAS_ATTR
            | NODE_CUR_POS
    )
}

/// The child nodes of `node` (which starts at `offset`), each with its own offset.
fn green_nodes(
    node: &GreenNodeData,
    offset: u32,
) -> impl Iterator<Item = (&GreenNodeData, u32)> + '_ {
    node.children()
        .scan(offset, |at, child| {
            let start = *at;
            *at += u32::from(child.text_len());
            Some((child.into_node(), start))
        })
        .filter_map(|(n, start)| Some((n?, start)))
}

/// The `n`th child expression, as rnix's accessors count them.
fn nth_expr(node: &GreenNodeData, offset: u32, n: usize) -> Option<(&GreenNodeData, u32)> {
    green_nodes(node, offset)
        .filter(|(c, _)| is_expr(kind(c)))
        .nth(n)
}

/// The one token of an identifier node (`x`, or the keyword `or` used as a name).
fn single_token(node: &GreenNodeData) -> Option<&GreenTokenData> {
    let mut children = node.children();
    match (children.next(), children.next()) {
        (Some(NodeOrToken::Token(t)), None) => Some(t),
        _ => None,
    }
}

fn has_rec(node: &GreenNodeData) -> bool {
    node.children().any(|c| {
        c.into_token()
            .is_some_and(|t| rnix::NixLanguage::kind_from_raw(t.kind()) == TOKEN_REC)
    })
}

/// Our operator for rnix's.
fn bin_op(op: Option<ast::BinOpKind>, pos: Pos) -> Result<BinOp, EvalError> {
    use ast::BinOpKind as K;
    Ok(match op {
        Some(K::Concat) => BinOp::Concat,
        Some(K::Update) => BinOp::Update,
        Some(K::Add) => BinOp::Add,
        Some(K::Sub) => BinOp::Sub,
        Some(K::Mul) => BinOp::Mul,
        Some(K::Div) => BinOp::Div,
        Some(K::And) => BinOp::And,
        Some(K::Or) => BinOp::Or,
        Some(K::Implication) => BinOp::Impl,
        Some(K::Equal) => BinOp::Eq,
        Some(K::NotEqual) => BinOp::Ne,
        Some(K::Less) => BinOp::Lt,
        Some(K::LessOrEq) => BinOp::Le,
        Some(K::More) => BinOp::Gt,
        Some(K::MoreOrEq) => BinOp::Ge,
        Some(K::PipeLeft | K::PipeRight) => {
            return Err(EvalError::unsupported("the pipe operator", Some(pos)))
        }
        None => return Err(EvalError::syntax("missing operator", pos, 1)),
    })
}

/// The name of an attribute known without evaluation: identifiers, plain strings, `${"x"}`.
fn static_name(attr: &ast::Attr, names: &mut Names) -> Option<Rc<str>> {
    let mut plain = |s: &ast::Str| -> Option<Rc<str>> {
        if let Some(text) = plain_literal(s, names) {
            return Some(text);
        }
        let mut out = String::new();
        for part in s.normalized_parts() {
            match part {
                InterpolPart::Literal(t) => out.push_str(&t),
                InterpolPart::Interpolation(_) => return None,
            }
        }
        Some(names.get(&out))
    };
    match attr {
        ast::Attr::Ident(id) => Some(ident_name(id, names)),
        ast::Attr::Str(s) => plain(s),
        ast::Attr::Dynamic(d) => match d.expr() {
            Some(ast::Expr::Str(s)) => plain(&s),
            _ => None,
        },
    }
}

fn show_path(attrs: &[Key]) -> String {
    attrs
        .iter()
        .map(|a| match a {
            Key::Static(n) => n.to_string(),
            Key::Dynamic(..) => "\"${...}\"".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Resolves a path literal's text as Nix does: relative to the file's directory, `~` to HOME,
/// then lexically canonicalised.
pub(crate) fn resolve_path_text(dir: &Path, home: Option<&Path>, text: &str) -> Option<PathBuf> {
    let joined = if let Some(rest) = text.strip_prefix("~/") {
        home?.join(rest)
    } else if text.starts_with('/') {
        PathBuf::from(text)
    } else {
        dir.join(text)
    };
    Some(canon_path(&joined.to_string_lossy()))
}

/// Nix's `canonPath`: absolute, no `.`/`..`/empty components, no trailing slash.
pub(crate) fn canon_path(path: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    PathBuf::from(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lowers `src` both ways: the green walk, and rnix's typed AST from the root (the walk
    /// the green one must match, expression for expression and error location for location).
    fn both(src: &str) -> (String, String) {
        let parse = rnix::Root::parse(src);
        assert!(parse.errors().is_empty(), "{src}: {:?}", parse.errors());
        let globals: HashMap<Rc<str>, u32> = ["builtins", "true", "false", "null", "import"]
            .iter()
            .enumerate()
            .map(|(i, n)| (Rc::from(*n), i as u32))
            .collect();
        let dir = Path::new("/r");
        let mut names = Names::default();
        let green = Lowerer::new(0, dir, globals.clone(), None, &mut names)
            .lower_file(parse.syntax().green());
        let mut names = Names::default();
        let typed = Lowerer::new(0, dir, globals, None, &mut names).lower(
            Some(ast::Expr::Root(parse.tree())),
            Pos { file: 0, offset: 0 },
        );
        (format!("{green:?}"), format!("{typed:?}"))
    }

    #[test]
    fn green_walk_lowers_and_locates_errors_as_the_typed_ast_does() {
        let cases = [
            r#"let k = import ./k.nix; a = [ k.u0 k.u1 ]; in { "s/a.age".publicKeys = a ++ [ k.u2 ]; "s/b.age" = { publicKeys = a; armor = true; }; }"#,
            "{ a.b = 1; a.c = 2; a = { d = 3; }; }",
            "{ a = { b = 1; }; a.b = 2; }",
            "{ x = 1;\n  y.z = 2;\n  y.z = 3; }",
            "{ a = 1; \"a\" = 2; }",
            "{ ${\"a\"} = 1; a = 2; }",
            "{ \"a\\n\" = 1; \"a${toString 1}\" = 2; }",
            "let a = 1; inherit (builtins) map; in { inherit a; b = map (x: x) [ a ]; }",
            "let ${\"a\"} = 1; in a",
            "rec { a = 1; b = a; inherit a; }",
            "{ a = [ 1 2.5 \"x\" ''y'' ./p ~/q <n> (x: x) ]; }",
            "{ a = nope; }",
            "[ 1 (f: { a = f; }) { b = missing; } ]",
            "{ a = x: { ${x} = 1; }; b = with builtins; undefinedHere; }",
            "{ a.\"b\".c = 1 + 2 * 3 - 4 / 5; d = !true || false && null == null; e = -1; }",
            "{ a = { b = 1; }.b or 2; c = { } ? x; d = {}.${\"e\"}; f = __curPos; }",
            "{ a = 1 |> 2; }",
            "{ or = 1; b = { or = 2; }.or; }",
            "let f = { a, b ? 1, ... }@c: a; in f { a = 1; }",
            "{ a = if true then 1 else 2; b = assert true; 3; }",
            "((({ a = (({ b = 1; })); a.c = 2; })))",
            "{ a = { inherit b; }; }",
            "{ inherit (x) y; }",
        ];
        for src in cases {
            let (green, typed) = both(src);
            assert_eq!(green, typed, "{src}");
        }
    }
}
