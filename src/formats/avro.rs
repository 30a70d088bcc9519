//! Avro, as ZTF writes it: the object container file (header, metadata, sync marker, blocks) and
//! the binary encoding of a datum, driven by the writer schema embedded in each file.
//!
//! The writer schema's JSON is compiled once into an arena of [`Node`]s (named types resolved,
//! so `ztf.alert.cutout` defined once and referenced three times is one node). Decoding borrows
//! from the file's bytes: strings and cutout bytes are slices, nothing is copied or allocated.
//! Blocks are framed one at a time ([`Header::blocks`]), resynchronising at the next sync marker
//! after a damaged one; nesting, value counts, lengths and inflated sizes are held to the limits
//! below, so no input can take the stack, the heap or the clock with it.
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
    /// A length that is more than the bytes left.
    #[error("{what} of {len} bytes, but only {left} bytes are left")]
    TooLong { what: &'static str, len: usize, left: usize },
    /// More records in a block than its bytes can hold.
    #[error("block {block} declares {count} records, but its {bytes} bytes hold at most {most} (a record takes at least {min} bytes)")]
    TooManyRecords { block: usize, count: usize, bytes: usize, most: usize, min: usize },
    /// More array or map items than the bytes left can hold.
    #[error("an array or map block declares {count} items, but the {left} bytes left hold at most {most}")]
    TooManyItems { count: usize, left: usize, most: usize },
    /// Values nested deeper than [`MAX_NESTING`].
    #[error("values nested more than {MAX_NESTING} deep")]
    TooDeep,
    /// More values than [`MAX_VALUES_PER_BYTE`] allows for the file's bytes.
    #[error("more values than {MAX_VALUES_PER_BYTE} per byte of data (a schema of values that take no bytes?)")]
    TooManyValues,
    /// A deflate block that inflates beyond [`MAX_INFLATED_BLOCK`] or what is left of the file's
    /// allowance ([`MAX_INFLATE_RATIO`]).
    #[error("deflate block {block} inflates to more than {limit} bytes (the limit for this block)")]
    InflatedTooLarge { block: usize, limit: usize },
}

impl AvroError {
    /// The message says which block it is about.
    #[must_use]
    pub fn names_block(&self) -> bool {
        matches!(
            self,
            AvroError::BadSync { .. }
                | AvroError::BlockSizeMismatch { .. }
                | AvroError::BadDeflate(_)
                | AvroError::TooManyRecords { .. }
                | AvroError::InflatedTooLarge { .. }
        )
    }
}

/// Deepest nesting of records, arrays, maps and unions in a datum (ZTF alerts nest 4 deep): a
/// recursive named type cannot take the decoder's stack with it.
pub const MAX_NESTING: usize = 64;
/// Values stepped over per byte of block data, plus [`VALUES_BASE`] per file: types that take no
/// bytes (`null`, empty records) cannot make a few bytes take forever. A ZTF alert needs < 0.2.
pub const MAX_VALUES_PER_BYTE: usize = 4;
/// Values any file may hold regardless of its size.
pub const VALUES_BASE: usize = 1 << 16;
/// Largest inflated deflate block (ZTF writes one alert, < 1 MiB, per block).
pub const MAX_INFLATED_BLOCK: usize = 64 << 20;
/// Bytes all of a file's deflate blocks may inflate to, per stored byte of the file, beyond one
/// block's [`MAX_INFLATED_BLOCK`]: alert data deflates 1.5–4×, a deflate bomb 1000×.
pub const MAX_INFLATE_RATIO: usize = 32;
/// Most bytes deflate can inflate one byte to (RFC 1951's longest match per bit): bounds the
/// records a damaged deflate block could have held.
pub const DEFLATE_MAX_RATIO: usize = 1032;

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
    /// Fewest bytes a value of each node can take (a lower bound: a recursive type counts as 0).
    min_sizes: Vec<usize>,
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
        let min_sizes = min_sizes(&compiler.nodes);
        Ok(Schema { nodes: compiler.nodes, root, min_sizes })
    }

    /// Fewest bytes a value of `index` can take (a lower bound).
    #[must_use]
    pub fn min_size(&self, index: usize) -> usize {
        self.min_sizes[index]
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

/// The fewest bytes each node's value can take, in one pass over the arena (memoised, so shared
/// named types are counted once; depth-limited, so a chain of 100,000 records cannot overflow).
fn min_sizes(nodes: &[Node]) -> Vec<usize> {
    let mut memo = vec![None; nodes.len()];
    for index in 0..nodes.len() {
        min_size_of(nodes, index, &mut memo, 0);
    }
    memo.into_iter().map(|m| m.unwrap_or(0)).collect()
}

fn min_size_of(nodes: &[Node], index: usize, memo: &mut [Option<usize>], depth: usize) -> usize {
    if let Some(known) = memo[index] {
        return known;
    }
    if depth > MAX_NESTING {
        return 0; // too deep to look further: 0 is still a lower bound
    }
    memo[index] = Some(0); // a type reached again while being measured is recursive: counts as 0
    let size = match &nodes[index] {
        Node::Null | Node::Pending => 0,
        Node::Boolean | Node::Int | Node::Long | Node::Enum { .. } | Node::Bytes | Node::String | Node::Array(_) | Node::Map(_) => 1,
        Node::Float => 4,
        Node::Double => 8,
        Node::Fixed(size) => *size,
        Node::Record { fields, .. } => {
            fields.iter().fold(0usize, |sum, field| sum.saturating_add(min_size_of(nodes, field.node, memo, depth + 1)))
        }
        Node::Union(branches) => 1 + branches.iter().map(|b| min_size_of(nodes, *b, memo, depth + 1)).min().unwrap_or(0),
    };
    memo[index] = Some(size);
    size
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

/// A read position in Avro binary data, with a budget of values it may still step over.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    values_left: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`, allowed the values `data`'s size allows on its own.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Cursor::with_budget(data, value_budget(data.len()))
    }

    /// A cursor at the start of `data` that may step over `values` values (see [`MAX_VALUES_PER_BYTE`]).
    #[must_use]
    pub fn with_budget(data: &'a [u8], values: usize) -> Self {
        Cursor { data, pos: 0, values_left: values }
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

    /// Values this cursor may still step over.
    #[must_use]
    pub fn values_left(&self) -> usize {
        self.values_left
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
        // Most longs in an alert (union branches, lengths, counts, small values) are one byte.
        if let Some(&byte) = self.data.get(self.pos).filter(|byte| **byte < 0x80) {
            self.pos += 1;
            return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
        }
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

    /// `bytes` or `string` content: borrowed, so its length is checked against the bytes left
    /// before anything else is done with it.
    ///
    /// # Errors
    /// Truncated.
    pub fn bytes(&mut self) -> Result<&'a [u8], AvroError> {
        let len = self.length()?;
        let left = self.data.len() - self.pos;
        if len > left {
            return Err(AvroError::TooLong { what: "a bytes or string value", len, left });
        }
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

    /// The item count of the next array or map block, checked against what the bytes left can
    /// hold when each item takes at least `min_item` bytes.
    fn items_block(&mut self, min_item: usize) -> Result<usize, AvroError> {
        let count = self.block_count()?;
        let left = self.data.len() - self.pos;
        // Items that take no bytes are bounded by the value budget instead.
        match left.checked_div(min_item) {
            Some(most) if count > most => Err(AvroError::TooManyItems { count, left, most }),
            _ => Ok(count),
        }
    }

    /// The item count of the next block of an array being read item by item (0 ends it),
    /// bounded as when stepping over it.
    ///
    /// # Errors
    /// Malformed count, or more items than the bytes left can hold.
    pub fn array_block(&mut self, min_item: usize) -> Result<usize, AvroError> {
        self.items_block(min_item)
    }

    /// One more value read or stepped over, if the budget allows.
    ///
    /// # Errors
    /// The budget is spent.
    pub fn spend(&mut self) -> Result<(), AvroError> {
        self.values_left = self.values_left.checked_sub(1).ok_or(AvroError::TooManyValues)?;
        Ok(())
    }

    /// Step over one value of type `node`.
    ///
    /// # Errors
    /// The data does not hold a value of that type, or it breaks a limit.
    pub fn skip(&mut self, schema: &Schema, node: usize) -> Result<(), AvroError> {
        self.skip_at(schema, node, 0)
    }

    fn skip_at(&mut self, schema: &Schema, node: usize, depth: usize) -> Result<(), AvroError> {
        self.spend()?;
        if depth > MAX_NESTING {
            return Err(AvroError::TooDeep);
        }
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
                    self.skip_at(schema, field.node, depth + 1)?;
                }
            }
            Node::Array(items) => {
                self.count_items_at(schema, *items, depth + 1)?;
            }
            Node::Map(values) => loop {
                // A key is a string: at least one byte, whatever the values take.
                let count = self.items_block(schema.min_size(*values).saturating_add(1))?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    self.bytes()?;
                    self.skip_at(schema, *values, depth + 1)?;
                }
            },
            Node::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.skip_at(schema, branches[branch], depth + 1)?;
            }
        }
        Ok(())
    }

    /// Step over an array's items, counting them.
    ///
    /// # Errors
    /// Malformed items, or a limit broken.
    pub fn count_items(&mut self, schema: &Schema, items: usize) -> Result<usize, AvroError> {
        self.count_items_at(schema, items, 1)
    }

    fn count_items_at(&mut self, schema: &Schema, items: usize, depth: usize) -> Result<usize, AvroError> {
        let min_item = schema.min_size(items);
        let mut total: usize = 0;
        loop {
            let count = self.items_block(min_item)?;
            if count == 0 {
                return Ok(total);
            }
            for _ in 0..count {
                self.skip_at(schema, items, depth)?;
            }
            total = total.saturating_add(count);
        }
    }
}

/// Values a cursor over `bytes` bytes may step over.
#[must_use]
pub fn value_budget(bytes: usize) -> usize {
    bytes.saturating_mul(MAX_VALUES_PER_BYTE).saturating_add(VALUES_BASE)
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

/// The first bytes of every Avro object container file.
pub const MAGIC: &[u8; 4] = b"Obj\x01";
const SYNC_LEN: usize = 16;

impl<'a> Container<'a> {
    /// Split a container file, all or nothing: every block must be intact (see [`Blocks`] for
    /// reading on after a damaged one).
    ///
    /// # Errors
    /// Not a container, truncated, an unsupported codec, a sync marker that does not match, or
    /// a block that breaks a limit.
    pub fn parse(file: &'a [u8]) -> Result<Container<'a>, AvroError> {
        let header = Header::parse(file)?;
        let mut blocks = Vec::new();
        for framed in header.blocks() {
            let frame = framed.map_err(|damaged| damaged.error)?;
            blocks.push(Block { count: frame.count, data: header.block_data(&frame, MAX_INFLATED_BLOCK)? });
        }
        Ok(Container { schema_json: header.schema_json, blocks })
    }
}

/// A container's header: what every block is read with.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The `avro.schema` metadata: the writer schema's JSON.
    pub schema_json: &'a [u8],
    /// Blocks are deflate-compressed (codec `deflate`), else stored as they are (`null`).
    pub deflate: bool,
    sync: &'a [u8],
    file: &'a [u8],
    /// Where the first block starts.
    body: usize,
}

/// A block whose frame (count, size, data, sync marker) is intact; its data is not yet decoded.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// Block number in the file, from 0.
    pub index: usize,
    /// Records the block declares.
    pub count: usize,
    /// The block's data as stored (compressed for deflate).
    pub data: &'a [u8],
}

/// A stretch of the file that is not an intact block: from a block's start to the next sync
/// marker (or the end of the file), where reading resumes.
#[derive(Debug, Clone)]
pub struct Damaged {
    /// Block number in the file, from 0.
    pub index: usize,
    /// Records the damaged block's header declares, when that count is readable; several
    /// blocks when their frames still line up with the next sync marker.
    pub count: Option<usize>,
    /// Bytes of the stretch skipped.
    pub bytes: usize,
    /// What is wrong with the block.
    pub error: AvroError,
    /// A sync marker was found after it, and reading resumed there.
    pub resumed: bool,
}

impl<'a> Header<'a> {
    /// Read the magic, the metadata (schema and codec) and the sync marker.
    ///
    /// # Errors
    /// Not a container, truncated, no schema, or an unsupported codec.
    pub fn parse(file: &'a [u8]) -> Result<Header<'a>, AvroError> {
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
        let sync = cursor.take(SYNC_LEN, "the header's sync marker")?;
        let schema_json = schema_json.ok_or(AvroError::NoSchema)?;
        Ok(Header { schema_json, deflate, sync, file, body: cursor.position() })
    }

    /// The blocks, in order: each intact or, when damaged, the stretch up to where reading resumes.
    #[must_use]
    pub fn blocks(&self) -> Blocks<'a> {
        Blocks { header: self.clone(), pos: self.body, index: 0 }
    }

    /// The bytes of block data (as stored) that can hold at most this many bytes of records.
    #[must_use]
    pub fn capacity(&self, stored: usize) -> usize {
        if self.deflate {
            stored.saturating_mul(DEFLATE_MAX_RATIO).min(MAX_INFLATED_BLOCK)
        } else {
            stored
        }
    }

    /// Bytes in the whole file.
    #[must_use]
    pub fn file_len(&self) -> usize {
        self.file.len()
    }

    /// What all of this file's deflate blocks may inflate to (see [`MAX_INFLATE_RATIO`]).
    #[must_use]
    pub fn inflate_allowance(&self) -> usize {
        self.file.len().saturating_mul(MAX_INFLATE_RATIO).saturating_add(MAX_INFLATED_BLOCK)
    }

    /// A block's record data: borrowed for codec null, inflated for deflate (to at most
    /// `limit` bytes, and never more than [`MAX_INFLATED_BLOCK`]).
    ///
    /// # Errors
    /// A deflate block that does not inflate, or inflates too far.
    pub fn block_data(&self, frame: &Frame<'a>, limit: usize) -> Result<std::borrow::Cow<'a, [u8]>, AvroError> {
        if self.deflate {
            Ok(inflate_block(frame.data, frame.index, limit.min(MAX_INFLATED_BLOCK))?.into())
        } else {
            Ok(frame.data.into())
        }
    }
}

/// The blocks of a container, resynchronising at the next sync marker after a damaged one.
#[derive(Debug)]
pub struct Blocks<'a> {
    header: Header<'a>,
    pos: usize,
    index: usize,
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Result<Frame<'a>, Damaged>;

    fn next(&mut self) -> Option<Self::Item> {
        let file = self.header.file;
        if self.pos >= file.len() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let start = self.pos;
        match frame_at(file, start, self.header.sync) {
            Ok((count, data, end)) => {
                self.pos = end;
                Some(Ok(Frame { index, count, data }))
            }
            // Only the sync marker is wrong, and a good block (or the end) follows where the
            // frame says: the next block is kept.
            Err(Broken::WrongSync { count, end }) if end == file.len() || frame_at(file, end, self.header.sync).is_ok() => {
                self.pos = end;
                let error = AvroError::BadSync { block: index };
                Some(Err(Damaged { index, count: Some(count), bytes: end - start, error, resumed: end < file.len() }))
            }
            Err(_) => {
                // Whatever broke the frame (a count, a size, the data's end), the block does not
                // end with a sync marker where its header says it should.
                let error = AvroError::BadSync { block: index };
                let next_sync = find(&file[start..], self.header.sync).map(|at| start + at);
                let stop = next_sync.unwrap_or(file.len());
                self.pos = next_sync.map_or(file.len(), |at| at + SYNC_LEN);
                let count = declared_count(&file[..stop], start, self.header.sync.len());
                Some(Err(Damaged { index, count, bytes: stop - start, error, resumed: next_sync.is_some() }))
            }
        }
    }
}

/// How a block's frame is broken.
enum Broken {
    /// The count, the size or the data cannot be read, or the file ends before the sync marker.
    Incomplete,
    /// Count, size and data are there, but the 16 bytes after them are not the sync marker.
    WrongSync { count: usize, end: usize },
}

/// The block framed at `start`: (count, data, where the next block starts).
fn frame_at<'a>(file: &'a [u8], start: usize, sync: &[u8]) -> Result<(usize, &'a [u8], usize), Broken> {
    let mut cursor = Cursor::new(&file[start..]);
    let count = cursor.length().map_err(|_| Broken::Incomplete)?;
    let size = cursor.length().map_err(|_| Broken::Incomplete)?;
    let data = cursor.take(size, "a block").map_err(|_| Broken::Incomplete)?;
    let marker = cursor.take(SYNC_LEN, "a block's sync marker").map_err(|_| Broken::Incomplete)?;
    let end = start + cursor.position();
    if marker != sync {
        return Err(Broken::WrongSync { count, end });
    }
    Ok((count, data, end))
}

/// The records declared by the damaged stretch `file[start..]` (which ends at a good sync marker
/// or the end of the file): the first block's count, or the sum of all when their frames line up
/// exactly with the end of the stretch (only their sync markers were damaged). None when the
/// first count cannot be read.
fn declared_count(file: &[u8], start: usize, sync_len: usize) -> Option<usize> {
    let mut cursor = Cursor::new(&file[start..]);
    let first = cursor.length().ok()?;
    let mut total = first;
    loop {
        let Ok(size) = cursor.length() else { return Some(first) };
        if cursor.take(size, "a block").is_err() {
            return Some(first);
        }
        if cursor.rest().is_empty() {
            return Some(total);
        }
        if cursor.take(sync_len, "a sync marker").is_err() {
            return Some(first);
        }
        let Ok(next) = cursor.length() else { return Some(first) };
        total = total.saturating_add(next);
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = haystack.get(from..)?.iter().position(|b| *b == first) {
        let candidate = from + at;
        if haystack.get(candidate + 1..candidate + needle.len()) == Some(rest) {
            return Some(candidate);
        }
        from = candidate + 1;
    }
    None
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

fn inflate_block(data: &[u8], block: usize, limit: usize) -> Result<Vec<u8>, AvroError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    // One byte past the limit tells a block that fits from one that does not.
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::DeflateDecoder::new(data).take(take).read_to_end(&mut out).map_err(|_| AvroError::BadDeflate(block))?;
    if out.len() > limit {
        return Err(AvroError::InflatedTooLarge { block, limit });
    }
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
