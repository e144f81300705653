from medssl.evaluation.published import published_rows


def test_every_published_cell_names_its_source_and_is_a_valid_score():
    rows = published_rows("pneumoniamnist") + published_rows("breastmnist") + published_rows("retinamnist")
    assert rows and all(row["source"].startswith("Yang et al., MedMNIST v2") for row in rows)
    assert all(0.5 <= row["auc"] <= 1 and 0 < row["acc"] <= 1 for row in rows)


def test_a_dataset_without_checked_numbers_has_none():
    assert published_rows("my_cohort") == []
