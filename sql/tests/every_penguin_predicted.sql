-- Every staged penguin has a species prediction.
SELECT s.penguin_id
FROM stg_penguins AS s
ANTI JOIN species_predictions AS p USING (penguin_id);
