"""A small byte-level BPE tokenizer trained on a fixed English corpus, with a chat family's special tokens."""

from __future__ import annotations

from pathlib import Path

from datakit.testing.families import Family

VOCAB_SIZE = 512
MAX_LENGTH = 2048

# Fixed training text: the same corpus gives the same vocabulary on every machine. It mixes prose,
# dialogue, numbers, code and punctuation so that common text encodes to a sensible number of tokens.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Water boils at 100 degrees Celsius at sea level, and it freezes at 0 degrees. The Earth orbits the Sun
once every 365.25 days, which is why a leap year adds one day every four years.
Hello! How are you today? I am fine, thank you. What would you like to talk about?
Can you help me write a short poem about the ocean? Of course. Here is a poem about the sea:
The waves come in, the waves go out, the gulls above them wheel about.
Please summarize the following article in three sentences. Sure, here is a summary of the main points.
First, preheat the oven to 180 degrees. Second, mix the flour, sugar and butter in a large bowl.
Third, add two eggs and a cup of milk, then stir until the batter is smooth. Bake for 25 minutes.
The answer is 42. Let me think step by step: 6 times 7 is 42, and 40 plus 2 is also 42.
What is the capital of France? The capital of France is Paris. What is the capital of Japan? Tokyo.
def add(a, b):
    return a + b

for i in range(10):
    print(i, add(i, 1))

import json
data = {"name": "Alice", "age": 30, "tags": ["red", "green", "blue"]}
print(json.dumps(data, indent=2))
SELECT name, email FROM users WHERE active = 1 ORDER BY name;
The user asked a question, and the assistant gave a helpful, honest and harmless answer.
I'm sorry, but I can't help with that request. Is there anything else I can do for you?
She said, "It's going to rain tomorrow," so we packed our umbrellas and warm coats.
In 1969, astronauts landed on the Moon; millions of people watched on television.
Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside green leaves.
The library opens at 9:00 a.m. and closes at 5:30 p.m. from Monday to Friday.
Machine learning models learn patterns from data. A language model predicts the next word in a sentence.
Good morning, everyone. Today we will discuss the history of science, art, music and mathematics.
Why is the sky blue? Sunlight scatters off the molecules of the air, and blue light scatters the most.
List three fruits: apples, bananas, cherries. List three colors: red, yellow, purple.
My favorite books are about travel, cooking, gardening, and the lives of famous people.
The train leaves at 7:45 and arrives at 10:15, so the trip takes two and a half hours.
Thank you for your question! The short answer is yes; the long answer depends on the details.
Rules: be kind, be clear, and be brief. Never share private information about other people.
E = mc^2, a^2 + b^2 = c^2, and 3.14159 is close to pi. 1 + 1 = 2; 2 * 3 = 6; 10 / 4 = 2.5.
<html><body><p>Hello, world!</p></body></html> https://example.com/path?query=value&page=2
Dear Sam, I hope this letter finds you well. Best wishes, and see you soon. Yours truly, Alex.
Q: Which is heavier, a kilogram of feathers or a kilogram of steel? A: Neither; they weigh the same.
The committee reviewed the proposal carefully and decided to approve it after a long discussion.
Once upon a time, in a small village near the mountains, there lived an old woman and her cat.
Every morning she walked to the market, bought fresh bread, and told stories to the children.
Yes. No. Maybe. Okay. Great! Wonderful. Interesting... Really? Absolutely; without a doubt.
"""


def build_tokenizer(family: Family, folder: Path) -> None:
    """Train the BPE on the corpus, add the family's special tokens and chat template, and save it to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        # The special tokens come on top, so that the full vocabulary has VOCAB_SIZE entries.
        vocab_size=VOCAB_SIZE - len(family.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    tok.add_special_tokens(list(family.specials))
    byte_level = processors.ByteLevel(trim_offsets=False)
    if family.adds_bos:
        bos = family.bos
        tok.post_processor = processors.Sequence([
            byte_level,
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, tok.token_to_id(bos))],
            ),
        ])
    else:
        tok.post_processor = byte_level

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        model_max_length=MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = family.template
    wrapped.save_pretrained(folder)
