-- A claim's lease (leased_until, claim) changes no indexed column: when the row's page has
-- room, PostgreSQL writes the new version beside the old one and adds no index entry (a HOT
-- update). Filled to the default 100 %, a page of new deliveries has no room, and every lease
-- added an entry to each of the table's indexes. A lease makes a row 24 bytes longer (its two
-- columns were null), so a page filled to half cannot take every row's; filled to 40 % it can.
-- Pages written from now on are filled so.
ALTER TABLE deliveries SET (fillfactor = 40);
