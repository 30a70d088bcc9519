//! Avro, as ZTF writes it: the object container file (header, metadata, sync marker, blocks) and
//! the binary encoding of a datum, driven by the writer schema embedded in each file.
//!
//! The writer schema's JSON is compiled once into an arena of [`Node`]s (named types resolved,
//! so `ztf.alert.cutout` defined once and referenced three times is one node). Decoding borrows
//! from the file's bytes: strings and cutout bytes are slices, nothing is copied or allocated.
//! Spec: <https://avro.apache.org/docs/1.11.1/specification/>.

use std::collections::HashMap;

use serde_json::Value as Json;
use thiserror::Error;

/// Why a container or datum could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AvroError {
    /// The file does not start with `Obj\x01`.
    #[error("not an Avro container file (no `Obj\\x01` magic)")]
    NotContainer,
    /// The data ended before a value was complete.
    #[error("truncated: data ends inside {0}")]
    Truncated(&'static str),
    /// A variable-length integer is longer than 10 bytes or out of range.
    #[error("malformed variable-length integer")]
    BadVarint,
    /// A union branch index outside the union.
    #[error("union branch {index} out of range (the union has {branches})")]
    BadUnionIndex { index: i64, branches: usize },
    /// A negative length for bytes, string or a block.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// The block does not end with the header's sync marker.
    #[error("block {block} does not end with the header's sync marker (file truncated or altered)")]
    BadSync { block: usize },
    /// The block's declared size does not match its records.
    #[error("block {block} declares {declared} bytes but its records use {used}")]
    BlockSizeMismatch { block: usize, declared: usize, used: usize },
    /// A codec other than null or deflate.
    #[error("unsupported codec `{0}`")]
    UnsupportedCodec(String),
    /// A deflate block that does not inflate.
    #[error("deflate block {0} does not inflate")]
    BadDeflate(usize),
    /// The header has no `avro.schema`.
    #[error("header has no avro.schema")]
    NoSchema,
    /// The writer schema is not valid Avro schema JSON.
    #[error("invalid writer schema: {0}")]
    BadSchema(String),
}

/// One node of a compiled schema; children are indices into [`Schema::nodes`].
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`
    Null,
    /// `boolean`
    Boolean,
    /// `int`
    Int,
    /// `long`
    Long,
    /// `float`
    Float,
    /// `double`
    Double,
    /// `bytes`
    Bytes,
    /// `string`
    String,
    /// `record` with its full name and fields.
    Record { name: String, fields: Vec<Field> },
    /// `enum` with its symbols.
    Enum { symbols: Vec<String> },
    /// `array` of items.
    Array(usize),
    /// `map` of values (string keys).
    Map(usize),
    /// `fixed` of a size.
    Fixed(usize),
    /// A union of branches, in the writer's order.
    Union(Vec<usize>),
    /// A named type whose definition is still being parsed (only during compilation).
    Pending,
}

/// A record field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// The field's `doc`, if any.
    pub doc: Option<String>,
    /// The field's type.
    pub node: usize,
}

/// A compiled writer schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// All nodes; `root` is the top-level type.
    pub nodes: Vec<Node>,
    /// The top-level type.
    pub root: usize,
}

impl Schema {
    /// Compile schema JSON.
    ///
    /// # Errors
    /// JSON that is not a valid Avro schema, or names a type that is never defined.
    pub fn parse(json: &[u8]) -> Result<Schema, AvroError> {
        let value: Json = serde_json::from_slice(json).map_err(|e| AvroError::BadSchema(e.to_string()))?;
        let mut compiler = Compiler { nodes: Vec::new(), names: HashMap::new() };
        let root = compiler.compile(&value, "")?;
        Ok(Schema { nodes: compiler.nodes, root })
    }

    /// The node at `index`.
    #[must_use]
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// If `index` is a record, or a union of null and a record, that record's fields.
    #[must_use]
    pub fn record_fields(&self, index: usize) -> Option<&[Field]> {
        match &self.nodes[index] {
            Node::Record { fields, .. } => Some(fields),
            Node::Union(branches) => branches.iter().find_map(|b| self.record_fields(*b)),
            _ => None,
        }
    }
}

struct Compiler {
    nodes: Vec<Node>,
    names: HashMap<String, usize>,
}

const PRIMITIVES: [(&str, Node); 8] = [
    ("null", Node::Null),
    ("boolean", Node::Boolean),
    ("int", Node::Int),
    ("long", Node::Long),
    ("float", Node::Float),
    ("double", Node::Double),
    ("bytes", Node::Bytes),
    ("string", Node::String),
];

impl Compiler {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn compile(&mut self, value: &Json, namespace: &str) -> Result<usize, AvroError> {
        match value {
            Json::String(name) => self.reference(name, namespace),
            Json::Array(branches) => {
                let branches = branches.iter().map(|b| self.compile(b, namespace)).collect::<Result<_, _>>()?;
                Ok(self.push(Node::Union(branches)))
            }
            Json::Object(object) => self.compile_object(object, namespace),
            other => Err(AvroError::BadSchema(format!("unexpected schema JSON {other}"))),
        }
    }

    fn reference(&mut self, name: &str, namespace: &str) -> Result<usize, AvroError> {
        if let Some((_, node)) = PRIMITIVES.iter().find(|(n, _)| *n == name) {
            return Ok(self.push(node.clone()));
        }
        let qualified = full_name(name, namespace);
        self.names
            .get(&qualified)
            .or_else(|| self.names.get(name))
            .copied()
            .ok_or_else(|| AvroError::BadSchema(format!("unknown type `{name}`")))
    }

    fn compile_object(&mut self, object: &serde_json::Map<String, Json>, namespace: &str) -> Result<usize, AvroError> {
        let kind = object.get("type").ok_or_else(|| AvroError::BadSchema("a schema object without `type`".into()))?;
        let Json::String(kind) = kind else {
            return self.compile(kind, namespace);
        };
        match kind.as_str() {
            "record" | "error" => self.compile_record(object, namespace),
            "enum" => {
                let symbols =
                    object.get("symbols").and_then(Json::as_array).ok_or_else(|| AvroError::BadSchema("enum without symbols".into()))?;
                let symbols = symbols.iter().filter_map(|s| s.as_str().map(String::from)).collect();
                let index = self.push(Node::Enum { symbols });
                self.define(object, namespace, index);
                Ok(index)
            }
            "fixed" => {
                let size = object.get("size").and_then(Json::as_u64).ok_or_else(|| AvroError::BadSchema("fixed without size".into()))?;
                let index = self.push(Node::Fixed(usize::try_from(size).map_err(|_| AvroError::BadSchema("fixed size too large".into()))?));
                self.define(object, namespace, index);
                Ok(index)
            }
            "array" => {
                let items = object.get("items").ok_or_else(|| AvroError::BadSchema("array without items".into()))?;
                let items = self.compile(items, namespace)?;
                Ok(self.push(Node::Array(items)))
            }
            "map" => {
                let values = object.get("values").ok_or_else(|| AvroError::BadSchema("map without values".into()))?;
                let values = self.compile(values, namespace)?;
                Ok(self.push(Node::Map(values)))
            }
            // A primitive written as an object, possibly with a logicalType: the encoding is the primitive's.
            primitive => self.reference(primitive, namespace),
        }
    }

    fn compile_record(&mut self, object: &serde_json::Map<String, Json>, namespace: &str) -> Result<usize, AvroError> {
        let name = object.get("name").and_then(Json::as_str).ok_or_else(|| AvroError::BadSchema("record without name".into()))?;
        let own_namespace = object.get("namespace").and_then(Json::as_str).unwrap_or(namespace);
        let full = full_name(name, own_namespace);
        let inner_namespace = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_string();
        let index = self.push(Node::Pending);
        self.names.insert(full.clone(), index);
        let mut fields = Vec::new();
        for field in
            object.get("fields").and_then(Json::as_array).ok_or_else(|| AvroError::BadSchema(format!("record {full} without fields")))?
        {
            let field_name =
                field.get("name").and_then(Json::as_str).ok_or_else(|| AvroError::BadSchema(format!("a field of {full} has no name")))?;
            let field_type = field.get("type").ok_or_else(|| AvroError::BadSchema(format!("field {full}.{field_name} has no type")))?;
            let node = self.compile(field_type, &inner_namespace)?;
            let doc = field.get("doc").and_then(Json::as_str).map(String::from);
            fields.push(Field { name: field_name.into(), doc, node });
        }
        self.nodes[index] = Node::Record { name: full, fields };
        Ok(index)
    }

    fn define(&mut self, object: &serde_json::Map<String, Json>, namespace: &str, index: usize) {
        if let Some(name) = object.get("name").and_then(Json::as_str) {
            let own_namespace = object.get("namespace").and_then(Json::as_str).unwrap_or(namespace);
            self.names.insert(full_name(name, own_namespace), index);
        }
    }
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

/// A read position in Avro binary data.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    /// Bytes consumed so far.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Take the next `len` bytes.
    ///
    /// # Errors
    /// Fewer than `len` bytes remain.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], AvroError> {
        let end = self.pos.checked_add(len).filter(|end| *end <= self.data.len()).ok_or(AvroError::Truncated(what))?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// A zig-zag variable-length long.
    ///
    /// # Errors
    /// Truncated or over-long varint.
    pub fn long(&mut self) -> Result<i64, AvroError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.data.get(self.pos).ok_or(AvroError::Truncated("an integer"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                #[allow(clippy::cast_possible_wrap)] // zig-zag decoding reinterprets the bits
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(AvroError::BadVarint)
    }

    /// A length (bytes, string, or block size): a non-negative long.
    ///
    /// # Errors
    /// Negative or malformed.
    pub fn length(&mut self) -> Result<usize, AvroError> {
        let value = self.long()?;
        usize::try_from(value).map_err(|_| AvroError::NegativeLength(value))
    }

    /// `bytes` or `string` content.
    ///
    /// # Errors
    /// Truncated.
    pub fn bytes(&mut self) -> Result<&'a [u8], AvroError> {
        let len = self.length()?;
        self.take(len, "a bytes or string value")
    }

    /// A union branch index, checked against the branch count.
    ///
    /// # Errors
    /// Out-of-range index.
    pub fn branch(&mut self, branches: usize) -> Result<usize, AvroError> {
        let index = self.long()?;
        usize::try_from(index).ok().filter(|i| *i < branches).ok_or(AvroError::BadUnionIndex { index, branches })
    }

    /// The item count of the next array or map block (0 ends the array); a negative count is
    /// followed by the block's byte size, which we do not need.
    ///
    /// # Errors
    /// Malformed count.
    pub fn block_count(&mut self) -> Result<usize, AvroError> {
        let count = self.long()?;
        if count < 0 {
            self.long()?;
        }
        usize::try_from(count.unsigned_abs()).map_err(|_| AvroError::BadVarint)
    }

    /// Step over one value of type `node`.
    ///
    /// # Errors
    /// The data does not hold a value of that type.
    pub fn skip(&mut self, schema: &Schema, node: usize) -> Result<(), AvroError> {
        match schema.node(node) {
            Node::Null | Node::Pending => {}
            Node::Boolean => {
                self.take(1, "a boolean")?;
            }
            Node::Int | Node::Long | Node::Enum { .. } => {
                self.long()?;
            }
            Node::Float => {
                self.take(4, "a float")?;
            }
            Node::Double => {
                self.take(8, "a double")?;
            }
            Node::Bytes | Node::String => {
                self.bytes()?;
            }
            Node::Fixed(size) => {
                self.take(*size, "a fixed value")?;
            }
            Node::Record { fields, .. } => {
                for field in fields {
                    self.skip(schema, field.node)?;
                }
            }
            Node::Array(items) => {
                self.count_items(schema, *items)?;
            }
            Node::Map(values) => loop {
                let count = self.block_count()?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.bytes()?;
                    self.skip(schema, *values)?;
                }
            },
            Node::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.skip(schema, branches[branch])?;
            }
        }
        Ok(())
    }

    /// Step over an array's items, counting them.
    ///
    /// # Errors
    /// Malformed items.
    pub fn count_items(&mut self, schema: &Schema, items: usize) -> Result<usize, AvroError> {
        let mut total = 0;
        loop {
            let count = self.block_count()?;
            if count == 0 {
                return Ok(total);
            }
            for _ in 0..count {
                self.skip(schema, items)?;
            }
            total += count;
        }
    }
}

/// An Avro object container file, split into its parts (borrowed from the file's bytes).
#[derive(Debug)]
pub struct Container<'a> {
    /// The `avro.schema` metadata: the writer schema's JSON.
    pub schema_json: &'a [u8],
    /// The blocks, each with its record count and its (uncompressed) data.
    pub blocks: Vec<Block<'a>>,
}

/// One data block of a container.
#[derive(Debug)]
pub struct Block<'a> {
    /// Records in the block.
    pub count: usize,
    /// The block's data: borrowed for codec null, inflated for deflate.
    pub data: std::borrow::Cow<'a, [u8]>,
}

const MAGIC: &[u8; 4] = b"Obj\x01";

impl<'a> Container<'a> {
    /// Split a container file; checks the magic, the codec and every block's sync marker.
    ///
    /// # Errors
    /// Not a container, truncated, an unsupported codec, or a sync marker that does not match.
    pub fn parse(file: &'a [u8]) -> Result<Container<'a>, AvroError> {
        let mut cursor = Cursor::new(file);
        if cursor.take(4, "the magic").map_err(|_| AvroError::NotContainer)? != MAGIC {
            return Err(AvroError::NotContainer);
        }
        let (schema_json, codec) = read_metadata(&mut cursor)?;
        let deflate = match codec {
            None | Some(b"null") => false,
            Some(b"deflate") => true,
            Some(other) => return Err(AvroError::UnsupportedCodec(String::from_utf8_lossy(other).into())),
        };
        let sync = cursor.take(16, "the header's sync marker")?;
        let mut blocks = Vec::new();
        while !cursor.rest().is_empty() {
            let count = cursor.length()?;
            let data = cursor.bytes()?;
            if cursor.take(16, "a block's sync marker").map_err(|_| AvroError::BadSync { block: blocks.len() })? != sync {
                return Err(AvroError::BadSync { block: blocks.len() });
            }
            let data = if deflate { inflate_block(data, blocks.len())?.into() } else { data.into() };
            blocks.push(Block { count, data });
        }
        Ok(Container { schema_json: schema_json.ok_or(AvroError::NoSchema)?, blocks })
    }
}

type Metadata<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn read_metadata<'a>(cursor: &mut Cursor<'a>) -> Result<Metadata<'a>, AvroError> {
    let (mut schema, mut codec) = (None, None);
    loop {
        let count = cursor.block_count()?;
        if count == 0 {
            return Ok((schema, codec));
        }
        for _ in 0..count {
            let key = cursor.bytes()?;
            let value = cursor.bytes()?;
            match key {
                b"avro.schema" => schema = Some(value),
                b"avro.codec" => codec = Some(value),
                _ => {}
            }
        }
    }
}

fn inflate_block(data: &[u8], block: usize) -> Result<Vec<u8>, AvroError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::DeflateDecoder::new(data).read_to_end(&mut out).map_err(|_| AvroError::BadDeflate(block))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_longs_decode() {
        let mut cursor = Cursor::new(&[0x00, 0x01, 0x02, 0x7f, 0x80, 0x01]);
        assert_eq!(cursor.long(), Ok(0));
        assert_eq!(cursor.long(), Ok(-1));
        assert_eq!(cursor.long(), Ok(1));
        assert_eq!(cursor.long(), Ok(-64));
        assert_eq!(cursor.long(), Ok(64));
        assert_eq!(cursor.long(), Err(AvroError::Truncated("an integer")));
    }

    #[test]
    fn named_types_resolve_across_namespaces() {
        let json = br#"{"type":"record","name":"alert","namespace":"ztf","fields":[
            {"name":"a","type":{"type":"record","name":"cutout","namespace":"ztf.alert","fields":[{"name":"b","type":"bytes","doc":"fits.gz"}]}},
            {"name":"c","type":["null","ztf.alert.cutout"]}]}"#;
        let schema = Schema::parse(json).unwrap();
        let fields = schema.record_fields(schema.root).unwrap();
        let a = schema.record_fields(fields[0].node).unwrap();
        let c = schema.record_fields(fields[1].node).unwrap();
        assert_eq!(a, c);
        assert_eq!(a[0].doc.as_deref(), Some("fits.gz"));
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(matches!(
            Schema::parse(br#"{"type":"record","name":"r","fields":[{"name":"x","type":"nope"}]}"#),
            Err(AvroError::BadSchema(_))
        ));
    }

    #[test]
    fn union_index_is_checked() {
        let schema = Schema::parse(br#"["null","int"]"#).unwrap();
        let mut cursor = Cursor::new(&[0x04]);
        assert_eq!(cursor.skip(&schema, schema.root), Err(AvroError::BadUnionIndex { index: 2, branches: 2 }));
    }
}
