//! ResNet backbones with torchvision's names (`conv1`, `bn1`, `layer1..4`), so
//! ImageNet weights in torchvision naming load as they are (`fc.*` is not built).
use super::blocks::{make_layer, run_layer, Block, BlockKind};
use super::layers::{BatchNorm2d, Conv2d, Scope};
use tch::Tensor;

pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: [Vec<Block>; 4],
    /// Output channels of layer1..4.
    pub channels: [i64; 4],
    numerics: super::Numerics,
}

impl ResNet {
    /// `depths` blocks per stage of `kind` (ResNet-101: Bottleneck [3, 4, 23, 3]).
    pub fn new(s: &Scope, kind: BlockKind, depths: [usize; 4]) -> Self {
        let conv1 = Conv2d::new(&s.sub("conv1"), 3, 64, 7, 2, 3, false);
        let bn1 = BatchNorm2d::new(&s.sub("bn1"), 64);
        let mut inplanes = 64;
        let mut channels = [0; 4];
        let layers: Vec<Vec<Block>> = [64, 128, 256, 512]
            .into_iter()
            .enumerate()
            .map(|(i, planes)| {
                let stride = if i == 0 { 1 } else { 2 };
                let layer = make_layer(&s.sub(format!("layer{}", i + 1)), kind, inplanes, planes, depths[i], stride);
                inplanes = planes * kind.expansion();
                channels[i] = inplanes;
                layer
            })
            .collect();
        let layers: [Vec<Block>; 4] = layers.try_into().unwrap_or_else(|_| unreachable!("four stages"));
        ResNet { conv1, bn1, layers, channels, numerics: s.numerics }
    }

    /// Features of layer1..4 (strides 4, 8, 16, 32).
    pub fn forward(&self, x: &Tensor, train: bool) -> [Tensor; 4] {
        let x = self.bn1.forward(&self.conv1.forward(x), train).relu();
        let x = match self.numerics {
            super::Numerics::PyTorch => x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false),
            // The ModelZoo's `MaxPool2d(3, 2, pad_mode='same')` pads at the end only.
            super::Numerics::MindSpore => super::numerics::max_pool_same(&x, 3, 2),
        };
        let l1 = run_layer(&self.layers[0], &x, train);
        let l2 = run_layer(&self.layers[1], &l1, train);
        let l3 = run_layer(&self.layers[2], &l2, train);
        let l4 = run_layer(&self.layers[3], &l3, train);
        [l1, l2, l3, l4]
    }
}
