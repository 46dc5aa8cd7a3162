//! Residual blocks with torchvision's names (`conv1/bn1/…/downsample.0/1`), shared by
//! HRNet and ResNet: BasicBlock and Bottleneck (stride on the 3×3 conv).
use super::layers::{conv1x1, conv3x3, BatchNorm2d, Conv2d, Scope};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

impl BlockKind {
    pub fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

#[derive(Debug)]
pub struct Block {
    kind: BlockKind,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    conv3: Option<(Conv2d, BatchNorm2d)>,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    pub fn new(s: &Scope, kind: BlockKind, inplanes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * kind.expansion();
        let (conv1, bn1, conv2, bn2, conv3) = match kind {
            BlockKind::Basic => {
                let conv1 = conv3x3(&s.sub("conv1"), inplanes, planes, stride, false);
                let bn1 = BatchNorm2d::new(&s.sub("bn1"), planes);
                let conv2 = conv3x3(&s.sub("conv2"), planes, planes, 1, false);
                let bn2 = BatchNorm2d::new(&s.sub("bn2"), planes);
                (conv1, bn1, conv2, bn2, None)
            }
            BlockKind::Bottleneck => {
                let conv1 = conv1x1(&s.sub("conv1"), inplanes, planes, false);
                let bn1 = BatchNorm2d::new(&s.sub("bn1"), planes);
                let conv2 = conv3x3(&s.sub("conv2"), planes, planes, stride, false);
                let bn2 = BatchNorm2d::new(&s.sub("bn2"), planes);
                let conv3 = conv1x1(&s.sub("conv3"), planes, out, false);
                let bn3 = BatchNorm2d::new(&s.sub("bn3"), out);
                (conv1, bn1, conv2, bn2, Some((conv3, bn3)))
            }
        };
        let downsample = (stride != 1 || inplanes != out).then(|| {
            let d = s.sub("downsample");
            (Conv2d::new(&d.sub(0), inplanes, out, 1, stride, 0, false), BatchNorm2d::new(&d.sub(1), out))
        });
        Block { kind, conv1, bn1, conv2, bn2, conv3, downsample }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.bn1.forward(&self.conv1.forward(x), train).relu();
        y = self.bn2.forward(&self.conv2.forward(&y), train);
        if let Some((c3, b3)) = &self.conv3 {
            debug_assert_eq!(self.kind, BlockKind::Bottleneck);
            y = b3.forward(&c3.forward(&y.relu()), train);
        }
        let residual = match &self.downsample {
            Some((c, b)) => b.forward(&c.forward(x), train),
            None => x.shallow_clone(),
        };
        (y + residual).relu()
    }
}

/// `_make_layer`: `blocks` blocks, the first possibly with a downsample.
pub fn make_layer(s: &Scope, kind: BlockKind, inplanes: i64, planes: i64, blocks: usize, stride: i64) -> Vec<Block> {
    let mut layer = vec![Block::new(&s.sub(0), kind, inplanes, planes, stride)];
    for i in 1..blocks {
        layer.push(Block::new(&s.sub(i), kind, planes * kind.expansion(), planes, 1));
    }
    layer
}

pub fn run_layer(layer: &[Block], x: &Tensor, train: bool) -> Tensor {
    layer.iter().fold(x.shallow_clone(), |y, b| b.forward(&y, train))
}
