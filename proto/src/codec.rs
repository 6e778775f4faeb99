//! The codec of every driftwatch gRPC service and client: prost's, with small first buffers.
//!
//! tonic gives each call an 8 KiB buffer to encode into and another to decode from, for as
//! long as the call lasts. An agent's stream lasts as long as the agent runs and carries
//! heartbeats and acks of a few dozen bytes, so a collector holding 10,000 agents kept 160 MiB
//! of buffers that were almost never used. These start at 512 bytes and grow (by doubling) to
//! the largest message a call carries: a batch of events, a listing of a whole fleet.

use std::marker::PhantomData;

use tonic::codec::BufferSettings;
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The first size of a call's encode and decode buffers, in bytes.
const FIRST_BUFFER: usize = 512;
/// How much an answer stream encodes before it yields to the runtime (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost's encoding with [`FIRST_BUFFER`]-sized buffers; named by `codec_path` in build.rs.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

fn buffers() -> BufferSettings {
    BufferSettings::new(FIRST_BUFFER, YIELD_THRESHOLD)
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffers())
    }
}
