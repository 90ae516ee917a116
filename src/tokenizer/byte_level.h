// The GPT-2 byte alphabet (PROTOCOL.md §1.5): byte-level BPE vocabularies spell every byte as
// one printable code point, so that token strings never contain spaces or control bytes.
// Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; the other 68 bytes map, in
// increasing byte order, to U+0100, U+0101, ... (space -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv4::tokenizer::byte_level {

// Code point that spells `byte` in vocabulary strings.
char32_t byte_to_char(uint8_t byte);
// The byte a vocabulary code point stands for; nullopt outside the alphabet.
std::optional<uint8_t> char_to_byte(char32_t cp);

// Vocabulary spelling of raw bytes ("\x20world" -> "Ġworld").
std::string encode(std::string_view bytes);
// Raw bytes of a vocabulary spelling; nullopt if it is not valid UTF-8 or contains a code point
// outside the alphabet (then the string is not a byte-level BPE token).
std::optional<std::string> decode(std::string_view token);

}  // namespace dsv4::tokenizer::byte_level
