//! `ListToolsResponse` with its tools encoded once. A full listing carries about 1 MB of JSON
//! schemas as `google.protobuf.Struct`s, and encoding a deep `Struct` per call costs tens of
//! milliseconds (each level re-measures everything below it). The server encodes every tool once
//! at start-up and a listing copies those bytes; the wire format is exactly the generated
//! message's, so clients decode into ordinary [`pb::Tool`]s.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::api::pb;

/// Field numbers of `connectors.v1.ListToolsResponse`.
const TOOLS: u32 = 1;
const NEXT_PAGE_TOKEN: u32 = 2;

/// One tool's message, encoded (cheap to clone: shared bytes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EncodedTool(Bytes);

impl EncodedTool {
    pub fn new(tool: &pb::Tool) -> Self {
        Self(Bytes::from(tool.encode_to_vec()))
    }

    fn field_len(&self) -> usize {
        encoding::key_len(TOOLS) + encoding::encoded_len_varint(self.0.len() as u64) + self.0.len()
    }
}

/// Response of ListTools (`connectors.v1.ListToolsResponse`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListToolsResponse {
    /// The tools, in a stable order: entity types by name, their operations in LIST, GET,
    /// CREATE, UPDATE, DELETE order, then actions by name. A decoded response holds them here.
    pub tools: Vec<pb::Tool>,
    /// Tools the server encoded in advance; written before `tools`, never filled by decoding.
    pub encoded_tools: Vec<EncodedTool>,
    /// Token of the next page; empty on the last one.
    pub next_page_token: String,
}

impl Message for ListToolsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for tool in &self.encoded_tools {
            encoding::encode_key(TOOLS, WireType::LengthDelimited, buf);
            encoding::encode_varint(tool.0.len() as u64, buf);
            buf.put_slice(&tool.0);
        }
        for tool in &self.tools {
            encoding::message::encode(TOOLS, tool, buf);
        }
        if !self.next_page_token.is_empty() {
            encoding::string::encode(NEXT_PAGE_TOKEN, &self.next_page_token, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            TOOLS => encoding::message::merge_repeated(wire_type, &mut self.tools, buf, ctx)
                .map_err(|mut e| {
                    e.push("ListToolsResponse", "tools");
                    e
                }),
            NEXT_PAGE_TOKEN => {
                encoding::string::merge(wire_type, &mut self.next_page_token, buf, ctx).map_err(
                    |mut e| {
                        e.push("ListToolsResponse", "next_page_token");
                        e
                    },
                )
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let token = if self.next_page_token.is_empty() {
            0
        } else {
            encoding::string::encoded_len(NEXT_PAGE_TOKEN, &self.next_page_token)
        };
        self.encoded_tools
            .iter()
            .map(EncodedTool::field_len)
            .sum::<usize>()
            + encoding::message::encoded_len_repeated(TOOLS, &self.tools)
            + token
    }

    fn clear(&mut self) {
        self.tools.clear();
        self.encoded_tools.clear();
        self.next_page_token.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> pb::Tool {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"Email": {"type": "string"}, "Metadata": {"type": "object"}}
        });
        pb::Tool {
            name: name.to_owned(),
            description: format!("{name} does things"),
            input_schema: Some(crate::api::convert::to_proto_struct(
                schema.as_object().unwrap(),
            )),
            entity_type: "Customer".to_owned(),
            operation: "GET".to_owned(),
            ..pb::Tool::default()
        }
    }

    /// The hand-written message must encode exactly as the generated one would.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(message, repeated, tag = "1")]
        tools: Vec<pb::Tool>,
        #[prost(string, tag = "2")]
        next_page_token: String,
    }

    #[test]
    fn pre_encoded_tools_are_byte_for_byte_the_generated_encoding() {
        let tools = vec![tool("get_customer"), tool("list_customers")];
        let listing = ListToolsResponse {
            encoded_tools: tools.iter().map(EncodedTool::new).collect(),
            next_page_token: "next".to_owned(),
            ..ListToolsResponse::default()
        };
        let generated = Generated {
            tools: tools.clone(),
            next_page_token: "next".to_owned(),
        };
        let bytes = listing.encode_to_vec();
        assert_eq!(bytes, generated.encode_to_vec());
        assert_eq!(listing.encoded_len(), bytes.len());

        let decoded = ListToolsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.tools, tools);
        assert!(decoded.encoded_tools.is_empty());
        assert_eq!(decoded.next_page_token, "next");
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "a decoded listing re-encodes the same"
        );
    }

    #[test]
    fn an_empty_listing_is_empty_on_the_wire() {
        assert!(ListToolsResponse::default().encode_to_vec().is_empty());
    }
}
