//! The deploy form's replacements, registered by name as layers are built: a convolution
//! can take folded weights and bias (its BatchNorm's scale and shift absorbed), and that
//! BatchNorm then passes its input through. Which convolution feeds which BatchNorm is
//! found by tracing the eval-mode graph (`crate::deploy::fold`), so no architecture lists
//! its pairs. Training-mode forwards ignore both.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use tch::Tensor;

/// A convolution's folded weight and bias, when set.
pub type ConvSlot = Rc<RefCell<Option<(Tensor, Tensor)>>>;
/// Set when a BatchNorm was folded into the convolution before it.
pub type BnSlot = Rc<Cell<bool>>;

/// Every convolution's and BatchNorm's slot of one model, by module name (`layer1.0.conv1`).
#[derive(Clone, Default)]
pub struct FusionSlots {
    convs: Rc<RefCell<HashMap<String, ConvSlot>>>,
    bns: Rc<RefCell<HashMap<String, BnSlot>>>,
}

impl FusionSlots {
    pub(crate) fn conv(&self, name: &str) -> ConvSlot {
        self.convs.borrow_mut().entry(name.to_string()).or_default().clone()
    }

    pub(crate) fn bn(&self, name: &str) -> BnSlot {
        self.bns.borrow_mut().entry(name.to_string()).or_default().clone()
    }

    /// Gives convolution `conv` the folded `weight` and `bias` and makes BatchNorm `bn`
    /// an identity in eval mode; false when either name is unknown.
    pub fn fold(&self, conv: &str, bn: &str, weight: Tensor, bias: Tensor) -> bool {
        let (Some(c), Some(b)) = (self.convs.borrow().get(conv).cloned(), self.bns.borrow().get(bn).cloned()) else {
            return false;
        };
        *c.borrow_mut() = Some((weight, bias));
        b.set(true);
        true
    }

    /// Folded convolutions' weights and biases, by parameter name (`layer1.0.conv1.weight`).
    pub fn folded_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, slot) in self.convs.borrow().iter() {
            if let Some((w, b)) = &*slot.borrow() {
                out.push((format!("{name}.weight"), w.shallow_clone()));
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of BatchNorm layers folded away.
    pub fn folded_count(&self) -> usize {
        self.bns.borrow().values().filter(|b| b.get()).count()
    }

    /// Applies `f` to every folded tensor in place (device or memory-format moves).
    pub fn map_folded(&self, f: impl Fn(&Tensor) -> Tensor) {
        for slot in self.convs.borrow().values() {
            let mut s = slot.borrow_mut();
            if let Some((w, b)) = s.take() {
                *s = Some((f(&w), f(&b)));
            }
        }
    }
}
