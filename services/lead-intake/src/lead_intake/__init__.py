"""lead-intake: captures people from form posts and turns them into leads."""
