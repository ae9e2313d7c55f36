//! [`cpu`](super::cpu)'s kernels inside burn's autodiff, so that training on burn's CPU backend uses them too:
//! each op takes its tensors down to burn-autodiff's `Autodiff<Flex>` primitives, runs the kernel forward and
//! registers a backward pass of its own kernels (burn-autodiff's `Backward`), as burn's own ops do.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::nn::GroupNorm;
use burn::prelude::*;

use super::cpu::{self, Conv};
use super::{primitive_values, primitive_view};

/// burn's CPU backend under autodiff, as `Device::flex().autodiff()` runs it.
type Ad = Autodiff<Flex>;
type Primitive = super::CpuPrimitive;

/// A CPU primitive of `values` in `shape`.
fn primitive<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Primitive {
    Tensor::<D>::from_data(TensorData::new(values, shape), &Device::flex())
        .try_into_primitive::<Flex>()
        .expect("a tensor made on burn's CPU backend is its primitive")
}

/// The backward pass of [`conv_same`]: [`cpu::conv_same_backward`] at the saved input and weight.
#[derive(Debug)]
struct ConvSame;

impl Backward<Flex, 2> for ConvSame {
    type State = (NodeId, NodeId, Conv);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = primitive_values(grads.consume::<Flex>(&ops.node));
        let (x, weight, c) = ops.state;
        let x = checkpointer.retrieve_node_output::<Primitive>(x);
        let weight = checkpointer.retrieve_node_output::<Primitive>(weight);
        let want = (node_x.is_some(), node_weight.is_some());
        let (dx, dweight) = cpu::conv_same_backward(&primitive_view(&x), &primitive_view(&weight), &grad, c, want);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, primitive(dx, [c.batch, c.cin, c.h, c.w]));
        }
        if let (Some(node), Some(dw)) = (node_weight, dweight) {
            grads.register::<Flex>(node.id, primitive(dw, [c.cout, c.cin, c.k, c.k]));
        }
    }
}

/// A "same" convolution of `x` with `weight` (no bias) under autodiff on burn's CPU backend, by this crate's
/// kernels both ways ([`cpu::conv_same`], [`cpu::conv_same_backward`]). `None` where the tensors are not
/// `Autodiff<Flex>` tensors (another checkpointing strategy, say), for burn's convolution to take them.
pub(crate) fn conv_same(x: Tensor<4>, weight: Tensor<4>, c: Conv) -> Option<Tensor<4>> {
    let (Ok(xa), Ok(wa)) = (x.try_into_primitive::<Ad>(), weight.try_into_primitive::<Ad>()) else {
        return None;
    };
    let out = cpu::conv_same(&primitive_view(xa.primitive()), &primitive_view(wa.primitive()), None, c);
    let out = primitive(out, [c.batch, c.cout, c.h, c.w]);
    let out = match ConvSame.prepare::<NoCheckpointing>([xa.node(), wa.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&xa), prep.checkpoint(&wa), c);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive::<Ad>(out))
}

/// The backward pass of [`group_norm`]: [`cpu::group_norm_backward`] at the saved input and statistics.
#[derive(Debug)]
struct Normalize;

impl Backward<Flex, 3> for Normalize {
    /// The input's node, `[gamma, beta]`, each (image, group)'s statistics, the sizes, whether SiLU follows,
    /// and the input's shape.
    type State = (NodeId, [Vec<f32>; 2], Vec<[f32; 2]>, cpu::Groups, bool, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = primitive_values(grads.consume::<Flex>(&ops.node));
        let (x, [gamma, beta], stats, groups, silu, shape) = ops.state;
        let x = checkpointer.retrieve_node_output::<Primitive>(x);
        let (dx, dgamma, dbeta) =
            cpu::group_norm_backward(&primitive_view(&x), &grad, &stats, groups, (&gamma, &beta), silu);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, primitive(dx, shape));
        }
        for (node, values) in [(node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, primitive(values, [groups.channels]));
            }
        }
    }
}

/// GroupNorm `norm` of `x`, then SiLU if `silu`, under autodiff on burn's CPU backend: [`cpu::group_norm`]
/// forward and [`cpu::group_norm_backward`] backward, one pass each way over each group after its sums where
/// burn's GroupNorm makes a dozen ops (and SiLU two more) each way. `None` where the tensors are not
/// `Autodiff<Flex>` tensors or the norm has no affine parameters.
pub(crate) fn group_norm(norm: &GroupNorm, x: Tensor<4>, silu: bool) -> Option<Tensor<4>> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return None;
    };
    let shape @ [batch, channels, h, w] = x.dims();
    let (Ok(xa), Ok(ga), Ok(ba)) =
        (x.try_into_primitive::<Ad>(), gamma.val().try_into_primitive::<Ad>(), beta.val().try_into_primitive::<Ad>())
    else {
        return None;
    };
    let (gv, bv) = (primitive_view(ga.primitive()).into_owned(), primitive_view(ba.primitive()).into_owned());
    let groups = cpu::Groups { batch, channels, pixels: h * w, groups: norm.num_groups };
    let mut out = primitive_view(xa.primitive()).into_owned();
    let stats = cpu::group_norm(&mut out, groups, &gv, &bv, norm.epsilon as f32, silu);
    let out = primitive(out, shape);
    let out = match Normalize.prepare::<NoCheckpointing>([xa.node(), ga.node(), ba.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&xa), [gv, bv], stats, groups, silu, shape);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive::<Ad>(out))
}

/// The backward pass of [`attention`]: [`cpu::attention_backward`] from the saved inputs and output.
#[derive(Debug)]
struct Attention;

impl Backward<Flex, 3> for Attention {
    /// The inputs' nodes, the output, the sizes with `[B, heads]` apart, and the scale.
    type State = ([NodeId; 3], Vec<f32>, cpu::Shape, [usize; 2], f32);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let grad = primitive_values(grads.consume::<Flex>(&ops.node));
        let (inputs, out, shape, [b, heads], scale) = ops.state;
        let [q, k, v] = inputs.map(|node| checkpointer.retrieve_node_output::<Primitive>(node));
        let [q, k, v] = [&q, &k, &v].map(primitive_view);
        let (dq, dk, dv) = cpu::attention_backward(&q, &k, &v, &out, &grad, shape, scale);
        let cpu::Shape { queries, keys, dim, value_dim, .. } = shape;
        let dims = [[queries, dim], [keys, dim], [keys, value_dim]];
        for ((node, values), [rows, width]) in ops.parents.into_iter().zip([dq, dk, dv]).zip(dims) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, primitive(values, [b, heads, rows, width]));
            }
        }
    }
}

/// Attention of `[B, heads, N, d]` queries over `[B, heads, M, d]` keys and values under autodiff on burn's CPU
/// backend: [`cpu::attention`] forward and [`cpu::attention_backward`] backward, where burn's fallback makes
/// the scores, their softmax (a scalar `exp` per score, both ways) and the products as separate ops. `None`
/// where the tensors are not `Autodiff<Flex>` tensors.
pub(crate) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Option<Tensor<4>> {
    let [b, heads, queries, dim] = q.dims();
    let [_, _, keys, value_dim] = v.dims();
    let shape = cpu::Shape { heads: b * heads, queries, keys, dim, value_dim };
    let (Ok(qa), Ok(ka), Ok(va)) =
        (q.try_into_primitive::<Ad>(), k.try_into_primitive::<Ad>(), v.try_into_primitive::<Ad>())
    else {
        return None;
    };
    let scale = 1.0 / (dim as f32).sqrt();
    let [qv, kv, vv] = [&qa, &ka, &va].map(|t| primitive_view(t.primitive()));
    let out = cpu::attention(&qv, &kv, &vv, shape, scale);
    let result = primitive(out.clone(), [b, heads, queries, value_dim]);
    let result =
        match Attention.prepare::<NoCheckpointing>([qa.node(), ka.node(), va.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let nodes = [prep.checkpoint(&qa), prep.checkpoint(&ka), prep.checkpoint(&va)];
                prep.finish((nodes, out, shape, [b, heads], scale), result)
            }
            OpsKind::UnTracked(prep) => prep.finish(result),
        };
    Some(Tensor::from_primitive::<Ad>(result))
}

/// The backward pass of [`geglu`]: [`cpu::geglu_backward`] at the saved input.
#[derive(Debug)]
struct Geglu;

impl Backward<Flex, 1> for Geglu {
    type State = (NodeId, [usize; 3]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_h] = ops.parents;
        let grad = primitive_values(grads.consume::<Flex>(&ops.node));
        let (h, shape) = ops.state;
        if let Some(node) = node_h {
            let h = checkpointer.retrieve_node_output::<Primitive>(h);
            grads.register::<Flex>(
                node.id,
                primitive(cpu::geglu_backward(&primitive_view(&h), &grad, shape[2] / 2), shape),
            );
        }
    }
}

/// [`cpu::geglu`] of `[…, value | gate]` rows under autodiff on burn's CPU backend, with
/// [`cpu::geglu_backward`] as its backward pass (burn's GELU evaluates `erf` one element at a time, both ways,
/// beside a split and a product); `None` where `h` is not an `Autodiff<Flex>` tensor.
pub(crate) fn geglu(h: Tensor<3>) -> Option<Tensor<3>> {
    let shape = h.dims();
    let ha = h.try_into_primitive::<Ad>().ok()?;
    let [b, n, width] = shape;
    let out = primitive(cpu::geglu(&primitive_view(ha.primitive()), width / 2), [b, n, width / 2]);
    let out = match Geglu.prepare::<NoCheckpointing>([ha.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&ha), shape);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive::<Ad>(out))
}
