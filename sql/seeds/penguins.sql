-- Seed: the Palmer penguins CSV next to this file, as shipped (see README.md here).
-- Paths are relative to the project folder.
CREATE OR REPLACE TABLE penguins AS
SELECT * FROM read_csv('seeds/penguins.csv', nullstr = 'NA');
