//! A slab of registrations addressed by generation-tagged tokens.
//!
//! A token is `index | generation << INDEX_BITS` (tokio's `ScheduledIo` address). Freeing
//! a slot bumps its generation, so a token handed out to an earlier occupant of the slot
//! no longer matches: an event the kernel reports under it — for an fd since closed, whose
//! number and slot a new registration may already hold — resolves to nothing and is
//! dropped, instead of waking the new owner.
//!
//! Freed slots are reused last-in first-out, which keeps the slab as small as the number
//! of live registrations allows (and makes reuse, and so the generation check, the common
//! case rather than a corner one).

use mio::Token;

/// Bits of a token that address the slot; the rest carry its generation.
const INDEX_BITS: u32 = 24;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// Generations wrap within the bits left above the index (40 on 64-bit targets).
const GENERATION_MASK: usize = usize::MAX >> INDEX_BITS;
/// The slab never hands out the two highest indices, so no token it makes can equal the
/// reactor's fixed tokens (`usize::MAX` and `usize::MAX - 1`), whatever the generation.
const MAX_SLOTS: usize = INDEX_MASK - 1;
const _: () = assert!(
    MAX_SLOTS - 1 < INDEX_MASK - 1,
    "slot indices stay below the fixed tokens'"
);
/// End of the free list.
const NONE: usize = usize::MAX;

fn make_token(index: usize, generation: usize) -> Token {
    Token(index | generation << INDEX_BITS)
}

fn split(token: Token) -> (usize, usize) {
    (token.0 & INDEX_MASK, token.0 >> INDEX_BITS)
}

enum State<T> {
    Occupied(T),
    Vacant { next_free: usize },
}

struct Slot<T> {
    generation: usize,
    state: State<T>,
}

/// Values addressed by generation-tagged [`Token`]s.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Most recently freed slot, head of the free list threaded through vacant slots.
    free: usize,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: NONE,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` and returns its token, or gives the value back when all
    /// 2^24 - 2 slots are taken.
    pub fn insert(&mut self, value: T) -> Result<Token, T> {
        let index = if self.free != NONE {
            self.free
        } else if self.slots.len() < MAX_SLOTS {
            self.slots.push(Slot {
                generation: 0,
                state: State::Vacant { next_free: NONE },
            });
            self.slots.len() - 1
        } else {
            return Err(value);
        };
        let slot = &mut self.slots[index];
        if let State::Vacant { next_free } = slot.state {
            self.free = next_free;
        }
        slot.state = State::Occupied(value);
        self.len += 1;
        Ok(make_token(index, slot.generation))
    }

    fn slot(&self, token: Token) -> Option<&Slot<T>> {
        let (index, generation) = split(token);
        self.slots.get(index).filter(|s| s.generation == generation)
    }

    fn slot_mut(&mut self, token: Token) -> Option<&mut Slot<T>> {
        let (index, generation) = split(token);
        self.slots
            .get_mut(index)
            .filter(|s| s.generation == generation)
    }

    /// The value `token` was handed out for, if it is still there.
    pub fn get(&self, token: Token) -> Option<&T> {
        match &self.slot(token)?.state {
            State::Occupied(v) => Some(v),
            State::Vacant { .. } => None,
        }
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        match &mut self.slot_mut(token)?.state {
            State::Occupied(v) => Some(v),
            State::Vacant { .. } => None,
        }
    }

    /// Takes the value out; `token` (and every earlier token of the slot) goes stale.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let free = self.free;
        let slot = self.slot_mut(token)?;
        if matches!(slot.state, State::Vacant { .. }) {
            return None;
        }
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        let State::Occupied(value) =
            std::mem::replace(&mut slot.state, State::Vacant { next_free: free })
        else {
            unreachable!("checked occupied above")
        };
        self.free = token.0 & INDEX_MASK;
        self.len -= 1;
        Some(value)
    }

    /// The token [`Self::retag`] would give the value under `token`.
    pub fn next_token(&self, token: Token) -> Option<Token> {
        let slot = self.slot(token)?;
        if matches!(slot.state, State::Vacant { .. }) {
            return None;
        }
        let generation = (slot.generation + 1) & GENERATION_MASK;
        Some(make_token(token.0 & INDEX_MASK, generation))
    }

    /// Gives the value a new token, as if removed and inserted again: `token` goes stale.
    pub fn retag(&mut self, token: Token) -> Option<Token> {
        let next = self.next_token(token)?;
        self.slot_mut(token)?.generation = next.0 >> INDEX_BITS;
        Some(next)
    }

    /// The stored values with their tokens.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.state {
                State::Occupied(v) => Some((make_token(i, s.generation), v)),
                State::Vacant { .. } => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut slab = Slab::default();
        let a = slab.insert("a").unwrap();
        let b = slab.insert("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.get(a), Some(&"a"));
        *slab.get_mut(b).unwrap() = "B";
        assert_eq!(slab.remove(b), Some("B"));
        assert_eq!(slab.remove(b), None);
        assert_eq!(slab.get(b), None);
        assert_eq!(slab.len(), 1);
        assert!(!slab.is_empty());
        assert_eq!(slab.remove(a), Some("a"));
        assert!(slab.is_empty());
    }

    #[test]
    fn a_reused_slot_refuses_the_old_token() {
        let mut slab = Slab::default();
        let old = slab.insert(1).unwrap();
        slab.remove(old);
        let new = slab.insert(2).unwrap();
        // Same slot, next generation.
        assert_eq!(old.0 & INDEX_MASK, new.0 & INDEX_MASK);
        assert_ne!(old, new);
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get_mut(old), None);
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.retag(old), None);
        assert_eq!(slab.get(new), Some(&2));
    }

    #[test]
    fn free_slots_are_reused_last_in_first_out() {
        let mut slab = Slab::default();
        let t: Vec<Token> = (0..4).map(|i| slab.insert(i).unwrap()).collect();
        slab.remove(t[1]);
        slab.remove(t[3]);
        assert_eq!(slab.insert(30).unwrap().0 & INDEX_MASK, 3);
        assert_eq!(slab.insert(10).unwrap().0 & INDEX_MASK, 1);
        assert_eq!(slab.insert(4).unwrap().0 & INDEX_MASK, 4);
        let mut values: Vec<i32> = slab.iter().map(|(_, v)| *v).collect();
        values.sort();
        assert_eq!(values, [0, 2, 4, 10, 30]);
        for (tok, v) in slab.iter() {
            assert_eq!(slab.get(tok), Some(v));
        }
    }

    #[test]
    fn retag_moves_the_value_to_a_new_token() {
        let mut slab = Slab::default();
        let old = slab.insert("x").unwrap();
        let next = slab.next_token(old).unwrap();
        assert_eq!(slab.get(old), Some(&"x"));
        let new = slab.retag(old).unwrap();
        assert_eq!(new, next);
        assert_ne!(old, new);
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get(new), Some(&"x"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn generations_wrap_without_touching_the_index() {
        let mut slab = Slab::default();
        slab.insert(0).unwrap();
        let t = slab.insert(1).unwrap();
        slab.slots[1].generation = GENERATION_MASK;
        let top = make_token(1, GENERATION_MASK);
        assert_eq!(slab.get(top), Some(&1));
        assert_ne!(top, t);
        let wrapped = slab.retag(top).unwrap();
        assert_eq!(wrapped, make_token(1, 0));
        assert_eq!(slab.get(wrapped), Some(&1));
        assert_eq!(slab.get(top), None);
    }

    #[test]
    fn fixed_tokens_never_resolve() {
        // The reactor's waker and signal tokens sit above every index the slab hands out.
        let mut slab = Slab::default();
        for i in 0..10 {
            slab.insert(i).unwrap();
        }
        assert_eq!(split(Token(usize::MAX)).0, INDEX_MASK);
        assert_eq!(split(Token(usize::MAX - 1)).0, INDEX_MASK - 1);
        assert_eq!(slab.get(Token(usize::MAX)), None);
        assert_eq!(slab.get(Token(usize::MAX - 1)), None);
    }
}
