//! Reading tensors back from the device as f32 values: synchronously natively, asynchronously in the browser
//! (which cannot block on the GPU). Every read-back failure is an [`Error::Tensor`].

use burn::prelude::*;

use crate::error::{Error, Result};

/// The values of `t`, converted to f32, in row-major order.
pub fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    f32s(t.try_into_data().map_err(|e| Error::Tensor(format!("{e:?}")))?)
}

/// [`values`] without blocking: what the browser must use.
pub async fn values_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    f32s(t.into_data_async().await.map_err(|e| Error::Tensor(format!("{e:?}")))?)
}

fn f32s(data: TensorData) -> Result<Vec<f32>> {
    data.try_into_vec_as::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))
}
