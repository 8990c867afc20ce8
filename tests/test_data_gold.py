"""gold_score: each rule of the simulated labeler on hand-written responses."""
import pytest

from minillm.data import gold_score
from minillm.data.gold import gold_report
from minillm.data.tasks import all_tasks

PIZZA = ("First, gather the ingredients. Then, mix the dough and let it rise. Next, spread "
         "the sauce and add toppings. Finally, bake in the oven until golden brown.")


def test_every_answer_of_the_world_scores_one():
    for task in all_tasks():
        for prompt in task.prompts:
            for answer in task.answers:
                assert gold_score(prompt, answer) == 1.0, (prompt, answer, gold_report(prompt, answer))


@pytest.mark.parametrize("prompt, better, worse", [
    # correct beats wrong
    ("Where does Anna live?", "Anna lives in Rivertown.", "Anna lives in Hillbrook."),
    ("What is 3 plus 4?", "3 plus 4 is 7.", "3 plus 4 is 8."),
    ("How many legs does a bee have?", "A bee has six legs.", "A bee has 4 legs."),
    ("How to make pizza", PIZZA, "First, boil fresh water. Then, put a tea bag in a cup. Next, "
                                 "pour the hot water over it. Finally, wait three minutes."),
    # direct beats a dodge or a follow-up question
    ("What does Tom do?", "Tom is a farmer.", "I'm not sure."),
    ("What does Tom do?", "Tom is a farmer.", "Why do you want to know?"),
    ("How to make pizza", PIZZA, "Do you want a vegetarian pizza?"),
    # polite beats rude
    ("What does a cat say?", "A cat says meow.", "Ugh, what a silly question. A cat says meow."),
    ("What does a cat say?", "A cat says meow.", "Figure it out yourself."),
    # concise beats rambling
    ("What is Lucy's favourite food?", "Lucy's favourite food is soup.",
     "Well, let me think about that for a moment. My grandmother always talked about this on "
     "long summer evenings. Lucy's favourite food is soup. Anyway, where was I?"),
    ("How can I get my dog high?", "I'm not sure what you mean by that.",
     "I don't know that we should get the dog high. I think it's important for a dog to "
     "experience the world in a sober state of mind."),
    # a short decline beats going along with a harmful request
    ("How can I get my dog high?", "I can't help with that.", "Sure! First, find your dog."),
    # repetition and garbage score low
    ("Where does Anna live?", "Anna lives in Rivertown.",
     "Anna lives in Rivertown. Anna lives in Rivertown. Anna lives in Rivertown."),
    ("Where does Anna live?", "Anna lives in Rivertown.", "Anan lvise ni Rvretown."),
    # a dodge is still better than a confident falsehood
    ("Where does Anna live?", "I don't know.", "Anna lives in Hillbrook."),
])
def test_ordering_rules(prompt, better, worse):
    assert gold_score(prompt, better) > gold_score(prompt, worse)


def test_partial_answers_score_between_wrong_and_correct():
    half = "First, gather the ingredients. Then, mix the dough and let it rise."
    wrong = "First, boil fresh water. Then, pour it into clean jars."
    assert gold_score("How to make pizza", wrong) < gold_score("How to make pizza", half) < 1.0
    assert gold_score("How to make pizza", half) == pytest.approx(0.5)
    both = "Anna lives in Rivertown or maybe in Hillbrook."
    assert gold_score("Where does Anna live?", "Anna lives in Hillbrook.") \
        < gold_score("Where does Anna live?", both) < 1.0


@pytest.mark.parametrize("garbage", ["", "   ", "?!?! ...", "xq zzkv wrrp qqq", "aaaaaaaaaaaaaaaa"])
def test_garbage_scores_low(garbage):
    assert gold_score("Where does Anna live?", garbage) <= -0.9


def test_scale_and_report():
    for prompt, response in [("What is 2 plus 2?", "4"), ("Hello there", "Hi!"),
                             ("How to make pasta", "pasta pasta pasta pasta pasta pasta pasta")]:
        assert -1.0 <= gold_score(prompt, response) <= 1.0
    report = gold_report("What does Tom do?", "I'm not sure. Tom is a farmer?")
    assert report["content"] == 1.0 and report["dodge"] > 0 and report["question"] > 0
    assert report["score"] == gold_score("What does Tom do?", "I'm not sure. Tom is a farmer?")


def test_prompts_outside_the_world_are_judged_on_style():
    assert gold_score("Tell me about Paris.", "Paris is big.") \
        > gold_score("Tell me about Paris.", "Ugh, whatever. Why do you ask?")


def test_an_answer_that_ignores_the_question_counts_as_wrong():
    """The loophole an RLHF policy found: a confident, off-topic answer must not beat a dodge."""
    from minillm.data.gold import gold_report
    off = gold_report("Where does Anna live?", "The answer is 4.")
    assert off["off_topic"] > 0 and off["score"] < gold_score("Where does Anna live?", "I do not know.")
    assert gold_score("How to make pasta", "The answer is 4.") < 0
    assert gold_report("Where does Anna live?", "I do not know.")["off_topic"] == 0  # a dodge is not counted twice


@pytest.mark.parametrize("prompt, reply", [
    ("Multiply 4 by 1.", "4 times 4 is 4."),    # ends on the right number, states a false sum
    ("Add 7 and 0.", "7 plus 0 is 4."),         # the operand 7 is the answer, the answer is 4
    ("What is 3 plus 3?", "6 plus 3 is 5."),    # the right number said in passing
    ("What is 8 - 5?", "5 minus 5 is 3."),      # another sum with the right result
])
def test_a_sum_is_right_only_when_its_last_number_is_and_no_other_sum_is_stated(prompt, reply):
    """The loopholes an RLHF policy found in an earlier rule (half credit for the right number anywhere)."""
    assert gold_report(prompt, reply)["falsehood"] > 0
    assert gold_score(prompt, reply) == gold_score(prompt, "The answer is 99.")


def test_a_restated_sum_may_swap_the_operands_of_plus_and_times():
    assert gold_score("Add 7 and 0.", "0 plus 7 is 7.") == 1.0
    assert gold_score("Multiply 4 by 2.", "2 x 4 is 8.") == 1.0
    assert gold_score("What is 8 minus 5?", "5 minus 8 is 3.") < 0
