//! Entity slicing: the stored entities one decision needs, loaded for it alone, so
//! that a tenant's entities never all sit in memory.
//!
//! To decide exactly as it would over every entity of the tenant, Cedar needs:
//! - the ancestors of the principal, the action and the resource (scopes and `in`);
//! - every entity a condition can look into — `.attr`, `has`, `getTag`, `hasTag`
//!   and `in` on an entity value — with its ancestors. Such entities come from the
//!   request (principal, action, resource, entity values in the context, entities
//!   sent with it), from entity literals in conditions, and from the attributes and
//!   tags of entities already loaded.
//!
//! The request's entities and the literals are level 0; an entity named by an
//! attribute (or tag) of a level-k entity is level k + 1 and is loaded when k + 1 is
//! less than the tenant's *depth*: the longest chain of such look-ups in any of its
//! policies' conditions (`resource.owner.level` is 2, `principal.level` is 1). Every
//! loaded entity brings all its ancestors (their attributes are not followed: no
//! expression can reach an ancestor except by naming it, which makes it level 0, or
//! through an attribute, which the levels cover). An entity that is not stored is
//! simply absent, as it would be from the whole set.

// A refused entity is the rare path and its issue goes straight into the answer.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use cedar_policy::EntityUid;
use cedar_policy::{Entities, Entity, PolicySet, Schema};
use serde_json::Value;

use super::builtin::NAMESPACE;
use super::compile::issue_from;
use super::model::Issue;

/// An entity parsed once: the entity, its parents, and the entities its attributes
/// and tags name.
pub struct LoadedEntity {
    pub entity: Entity,
    parents: Vec<EntityUid>,
    refs: Vec<EntityUid>,
}

impl LoadedEntity {
    /// Reads Cedar entity JSON with the schema, or without it when the entity no
    /// longer fits (a schema change cannot stop a tenant's decisions).
    pub fn parse(body: Value, schema: Option<&Schema>) -> Result<LoadedEntity, Issue> {
        let entity = match schema {
            Some(schema) => match Entity::from_json_value(body.clone(), Some(schema)) {
                Ok(entity) => entity,
                Err(error) => {
                    tracing::warn!(%error, "a stored entity does not fit the schema; loaded without it");
                    Entity::from_json_value(body, None).map_err(|e| issue_from("entity", &e, None))?
                }
            },
            None => Entity::from_json_value(body, None).map_err(|e| issue_from("entity", &e, None))?,
        };
        LoadedEntity::new(entity)
    }

    /// The parents and references of an entity already parsed.
    pub fn new(entity: Entity) -> Result<LoadedEntity, Issue> {
        let json = entity.to_json_value().map_err(|e| issue_from("entity", &e, None))?;
        let parents = json
            .get("parents")
            .and_then(Value::as_array)
            .map(|parents| parents.iter().filter_map(|p| EntityUid::from_json(p.clone()).ok()).collect())
            .unwrap_or_default();
        let mut refs = Vec::new();
        for part in ["attrs", "tags"] {
            if let Some(values) = json.get(part) {
                entity_refs(values, false, &mut refs);
            }
        }
        Ok(LoadedEntity { entity, parents, refs })
    }

    pub fn uid(&self) -> EntityUid {
        self.entity.uid()
    }
}

/// Collects the entity references in a JSON value: `{"__entity": {...}}`, and with
/// `implicit` also `{"type": T, "id": I}` (how a context may name an entity when a
/// schema says so; reading a record of that shape as one only loads more).
pub(crate) fn entity_refs(value: &Value, implicit: bool, out: &mut Vec<EntityUid>) {
    match value {
        Value::Object(map) => {
            if let Some(inner) = map.get("__entity") {
                if let Ok(uid) = EntityUid::from_json(inner.clone()) {
                    out.push(uid);
                }
                return;
            }
            if implicit
                && map.len() == 2
                && map.get("type").is_some_and(Value::is_string)
                && map.get("id").is_some_and(Value::is_string)
                && let Ok(uid) = EntityUid::from_json(value.clone())
            {
                out.push(uid);
                return;
            }
            for v in map.values() {
                entity_refs(v, implicit, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| entity_refs(v, implicit, out)),
        _ => {}
    }
}

/// What the conditions of a tenant's policies can look into.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The longest chain of entity look-ups in a condition.
    pub depth: usize,
    /// Entities named in conditions.
    pub literals: Vec<EntityUid>,
}

impl Reach {
    /// Reads every policy's conditions (Cedar's JSON form of them).
    pub fn of(policies: &PolicySet) -> Reach {
        let mut depth = 0;
        let mut literals = Vec::new();
        for policy in policies.policies() {
            match policy.to_json() {
                Ok(json) => {
                    for condition in json.get("conditions").and_then(Value::as_array).into_iter().flatten() {
                        if let Some(body) = condition.get("body") {
                            depth = depth.max(expression_depth(body, &mut literals));
                        }
                    }
                }
                // Unreadable: follow every reference, which is always enough.
                Err(_) => depth = usize::MAX,
            }
        }
        let mut seen = HashSet::new();
        literals.retain(|uid| seen.insert(uid.clone()));
        Reach { depth, literals }
    }
}

/// The longest chain of look-ups into entities in an expression (Cedar's JSON form).
/// Operators that read an entity's attributes, tags or ancestors add one to the
/// depth of their left operand; anything else is as deep as its deepest part. Over-
/// counting only loads more.
fn expression_depth(expression: &Value, literals: &mut Vec<EntityUid>) -> usize {
    match expression {
        Value::Object(map) => {
            if map.len() == 1
                && let Some((op, inner)) = map.iter().next()
            {
                match op.as_str() {
                    "Value" => {
                        entity_refs(inner, false, literals);
                        return 0;
                    }
                    "." | "has" | "getTag" | "hasTag" | "in" | "is" => {
                        let left = inner.get("left").map_or(0, |l| expression_depth(l, literals));
                        let rest = inner
                            .as_object()
                            .map(|o| {
                                o.iter()
                                    .filter(|(k, _)| k.as_str() != "left")
                                    .map(|(_, v)| expression_depth(v, literals))
                                    .max()
                                    .unwrap_or(0)
                            })
                            .unwrap_or(0);
                        return left.saturating_add(1).max(rest);
                    }
                    _ => {}
                }
            }
            map.values().map(|v| expression_depth(v, literals)).max().unwrap_or(0)
        }
        Value::Array(items) => items.iter().map(|v| expression_depth(v, literals)).max().unwrap_or(0),
        _ => 0,
    }
}

/// How an entity was reached: `Some(k)` through k attributes from the request,
/// `None` only as an ancestor (its attributes are not followed).
type Level = Option<usize>;

fn better(new: Level, old: Level) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n < o,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Gathers one decision's entities: ask [`SliceBuilder::wanted`] which stored
/// entities it needs next, [`SliceBuilder::supply`] each (or its absence), and when
/// nothing more is wanted, [`SliceBuilder::finish`].
pub struct SliceBuilder<'a> {
    depth: usize,
    /// Entities the decision has without the store: the schema's actions.
    provided: &'a Entities,
    /// The principal, when it is one of guard's users.
    user: Option<Arc<LoadedEntity>>,
    /// Entities sent with the request.
    sent: HashMap<EntityUid, Arc<LoadedEntity>>,
    /// Sent entities still to be looked for among the stored ones (a clash).
    unchecked: Vec<EntityUid>,
    checking: HashSet<EntityUid>,
    clashes: Vec<EntityUid>,
    stored: HashMap<EntityUid, Option<Arc<LoadedEntity>>>,
    reached: HashMap<EntityUid, Level>,
    pending: Vec<(EntityUid, Level)>,
}

impl<'a> SliceBuilder<'a> {
    /// Starts from `roots` (level 0) with the entities sent with the request.
    pub fn new(
        depth: usize,
        provided: &'a Entities,
        user: Option<Arc<LoadedEntity>>,
        sent: Vec<Arc<LoadedEntity>>,
        roots: impl IntoIterator<Item = EntityUid>,
    ) -> SliceBuilder<'a> {
        let sent: HashMap<EntityUid, Arc<LoadedEntity>> = sent.into_iter().map(|e| (e.uid(), e)).collect();
        let unchecked: Vec<EntityUid> = sent.keys().cloned().collect();
        let mut builder = SliceBuilder {
            depth,
            provided,
            user,
            unchecked: unchecked.clone(),
            sent,
            checking: HashSet::new(),
            clashes: Vec::new(),
            stored: HashMap::new(),
            reached: HashMap::new(),
            pending: Vec::new(),
        };
        for uid in roots.into_iter().chain(unchecked) {
            builder.need(uid, Some(0));
        }
        if let Some(user) = builder.user.clone() {
            builder.need(user.uid(), Some(0));
        }
        builder
    }

    fn need(&mut self, uid: EntityUid, level: Level) {
        if let Some(old) = self.reached.get(&uid)
            && !better(level, *old)
        {
            return;
        }
        self.reached.insert(uid.clone(), level);
        self.pending.push((uid, level));
    }

    /// The entity `uid` if known: `Some(None)` when it is known not to be stored (or
    /// needs nothing from the store), `None` when it must be fetched.
    fn resolve(&self, uid: &EntityUid) -> Option<Option<Arc<LoadedEntity>>> {
        if let Some(sent) = self.sent.get(uid) {
            return Some(Some(sent.clone()));
        }
        if let Some(user) = self.user.as_ref().filter(|u| u.uid() == *uid) {
            return Some(Some(user.clone()));
        }
        // guard's users, groups and roles are never stored; the schema's actions
        // come with their groups.
        if uid.type_name().namespace() == NAMESPACE || self.provided.get(uid).is_some() {
            return Some(None);
        }
        self.stored.get(uid).cloned()
    }

    fn advance(&mut self) {
        let mut waiting = Vec::new();
        while let Some((uid, level)) = self.pending.pop() {
            match self.resolve(&uid) {
                None => waiting.push((uid, level)),
                Some(None) => {}
                Some(Some(entity)) => {
                    for parent in &entity.parents {
                        self.need(parent.clone(), None);
                    }
                    if let Some(k) = level
                        && k.saturating_add(1) < self.depth
                    {
                        for reference in &entity.refs {
                            self.need(reference.clone(), Some(k + 1));
                        }
                    }
                }
            }
        }
        self.pending = waiting;
    }

    /// The stored entities needed next (none: the slice is complete).
    pub fn wanted(&mut self) -> Vec<EntityUid> {
        self.advance();
        let mut wanted: Vec<EntityUid> = self.unchecked.drain(..).collect();
        self.checking.extend(wanted.iter().cloned());
        let mut seen: HashSet<EntityUid> = wanted.iter().cloned().collect();
        for (uid, _) in &self.pending {
            if seen.insert(uid.clone()) {
                wanted.push(uid.clone());
            }
        }
        wanted
    }

    /// What the store holds for `uid`.
    pub fn supply(&mut self, uid: EntityUid, found: Option<Arc<LoadedEntity>>) {
        if self.checking.remove(&uid) {
            if found.is_some() {
                self.clashes.push(uid);
            }
            return;
        }
        self.stored.insert(uid, found);
    }

    /// How many stored entities were loaded.
    pub fn stored_count(&self) -> usize {
        self.stored.values().filter(|e| e.is_some()).count()
    }

    /// The decision's entities. A set of stored entities that does not load (a loop
    /// of parents written around the API) is left out, and the decision is made
    /// without stored entities, as it would have been over the whole set; entities
    /// sent with the request that clash with stored ones, or do not load with them,
    /// are the request's fault.
    pub fn finish(self) -> Result<Entities, Issue> {
        if let Some(uid) = self.clashes.first() {
            return Err(Issue::new(
                "entity",
                format!("{uid} is a stored entity; an entity sent with a request cannot replace it"),
            )
            .entity(uid.to_string()));
        }
        let user = self.user.iter().map(|u| u.entity.clone());
        let stored: Vec<Entity> = self.stored.values().flatten().map(|e| e.entity.clone()).collect();
        let sent: Vec<Entity> = self.sent.values().map(|e| e.entity.clone()).collect();
        let all = user.clone().chain(stored.iter().cloned()).chain(sent.iter().cloned());
        match self.provided.clone().add_entities(all, None) {
            Ok(entities) => Ok(entities),
            Err(error) => {
                if self.provided.clone().add_entities(user.clone().chain(stored), None).is_ok() {
                    return Err(issue_from("entity", &error, None));
                }
                tracing::error!(%error, "stored entities do not load; deciding without them");
                self.provided.clone().add_entities(user.chain(sent), None).map_err(|e| issue_from("entity", &e, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use cedar_policy::Policy;

    use super::*;

    fn depth_of(text: &str) -> usize {
        let policy = Policy::from_str(text).unwrap_or_else(|e| unreachable!("{e}"));
        let set = PolicySet::from_policies([policy]).unwrap_or_else(|e| unreachable!("{e}"));
        Reach::of(&set).depth
    }

    #[test]
    fn depth_counts_look_ups_into_entities() {
        assert_eq!(depth_of("permit(principal in G::\"g\", action, resource);"), 0);
        assert_eq!(depth_of("permit(principal, action, resource) when { principal.level > 2 };"), 1);
        assert_eq!(depth_of("permit(principal, action, resource) when { resource.owner == principal };"), 1);
        assert_eq!(depth_of("permit(principal, action, resource) when { resource.owner.level > 2 };"), 2);
        assert_eq!(depth_of("permit(principal, action, resource) when { resource.owner in G::\"g\" };"), 2);
        assert_eq!(depth_of("permit(principal, action, resource) when { context.doc.owner has name };"), 3);
        let set = PolicySet::from_policies([Policy::from_str(
            "permit(principal, action, resource) when { G::\"boss\".level > principal.level };",
        )
        .unwrap_or_else(|e| unreachable!("{e}"))])
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(Reach::of(&set).literals.iter().map(ToString::to_string).collect::<Vec<_>>(), ["G::\"boss\""]);
    }
}
