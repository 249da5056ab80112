"""The text rules of service/contract/vectorize.py, shared by training and serving."""

from __future__ import annotations

import numpy as np
import pytest

from service.contract.vectorize import OOV_ID, START_ID, WordIndex, hot_positions, multi_hot, tokenize

# ranks as in a Keras word index: 1 is the most frequent word
WORD_INDEX = {"the": 1, "film": 2, "br": 3, "great": 4, "Ángela": 5, "don't": 6, "café": 7, "rare": 9_998}


def test_punctuation_tab_and_newline_become_spaces():
    assert tokenize('great!!! film,the\tfilm\n"the"(film)') == ["great", "film", "the", "film", "the", "film"]


def test_only_ascii_letters_are_lowercased():
    assert tokenize("The FILM ÁNGELA Ángela") == ["the", "film", "Ángela", "Ángela"]


def test_line_breaks_in_html_yield_br():
    assert tokenize("great<br /><br />film") == ["great", "br", "br", "film"]


def test_apostrophes_stay_inside_words():
    assert tokenize("Don't") == ["don't"]


def test_splits_on_the_space_character_only():
    assert tokenize("a\rb c\xa0d") == ["a\rb", "c\xa0d"]


def test_word_ids_are_rank_plus_three_after_the_start_id():
    assert WordIndex(WORD_INDEX).encode("The great film") == [START_ID, 4, 7, 5]


def test_unknown_words_are_dropped():
    assert WordIndex(WORD_INDEX).encode("the zzyzx film") == [START_ID, 4, 5]


def test_words_past_num_words_become_the_oov_id():
    assert WordIndex(WORD_INDEX, num_words=10_000).encode("rare film") == [START_ID, OOV_ID, 5]


def test_empty_or_punctuation_only_text_is_just_the_start_id():
    index = WordIndex(WORD_INDEX)
    assert index.encode("") == [START_ID]
    assert index.encode("?!... ,,;") == [START_ID]


def test_non_ascii_words_are_looked_up_as_written():
    assert WordIndex(WORD_INDEX).encode("Café café Ángela") == [START_ID, 10, 10, 8]


def test_multi_hot_sets_each_occurring_id_once():
    rows = multi_hot([[1, 4, 4, 7], [1]], num_words=10)
    assert rows.dtype == np.float32
    assert rows.tolist() == [[0, 1, 0, 0, 1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]]


def test_sequence_ids_past_num_words_count_as_oov_padding_is_ignored_start_is_implied():
    assert hot_positions([0, 0, 14, 20_000], num_words=10_000).tolist() == [START_ID, OOV_ID, 14]


def test_negative_word_ids_are_refused():
    with pytest.raises(ValueError):
        multi_hot([[1, -3]])


def test_encoding_can_count_the_words_that_do_not_reach_the_model_as_themselves():
    index = WordIndex(WORD_INDEX, num_words=10_000)
    assert index.encode_counting_unknown("The rare zzyzx film") == ([START_ID, 4, OOV_ID, 5], 2)
    assert index.encode_counting_unknown("The rare zzyzx film")[0] == index.encode("The rare zzyzx film")
