-- The species classifier gets at least 95% of the held-out penguins right.
SELECT * FROM ML.EVALUATE(MODEL penguin_species) WHERE accuracy < 0.95;
