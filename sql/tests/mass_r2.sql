-- The weight model explains at least 75% of the variance on held-out penguins.
SELECT * FROM ML.EVALUATE(MODEL penguin_mass) WHERE r2_score < 0.75;
